/*
 * pages: a process with known memory, for testing `samepage capture` and measuring
 * what the real ksmd does with transparent huge pages. Built at test time
 * (test/oracle/real.ts buildHelper), as test/oracle/ksm-driver.c is.
 *
 * Usage: pages TAG MERGE
 *   TAG    0..65535, written into every "unique" page, so two processes started
 *          with different tags share only the pages meant to be shared
 *   MERGE  1: madvise the huge and small regions MADV_MERGEABLE; 0: do not
 *
 * Layout (every page is 4096 bytes; "unique" page i of region r holds the u32
 * (TAG << 16 | r << 12 | i) at every 4-byte offset; "dup" pages are all 0x5a):
 *   huge   4 MiB, 2 MiB-aligned, MADV_HUGEPAGE (a THP on the first write fault when
 *          the THP mode is madvise or always):
 *            THP 0, subpages   0..15   dup
 *                              16..31  unique
 *                              32..511 never written (zero-filled by the THP fault)
 *            THP 1, subpages   0..511  unique: nothing in it can merge
 *   small  16 pages, MADV_NOHUGEPAGE:
 *            pages 0..3   dup
 *                  4..7   written with zeros (anonymous zero-filled pages)
 *                  8..9   read only (mapped to the shared zero page)
 *                  10..15 never touched (not present)
 *   plain  8 pages, never madvised MERGEABLE: unique (only `capture --all-vmas` sees it)
 *
 * Prints one line "ready HUGE SMALL PLAIN" (hex addresses), then waits until stdin
 * reaches EOF, then exits: a test that dies takes this process with it.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define HUGE (2UL << 20)

static void die(const char *what) {
  perror(what);
  exit(2);
}

static void unique(char *p, unsigned tag, unsigned region, unsigned i) {
  uint32_t v = (uint32_t)tag << 16 | region << 12 | i;
  for (size_t o = 0; o < PAGE; o += 4) memcpy(p + o, &v, 4);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pages TAG MERGE\n");
    return 2;
  }
  unsigned tag = (unsigned)strtoul(argv[1], NULL, 0) & 0xffff;
  int merge = atoi(argv[2]);

  /* 2 MiB alignment by hand: map 6 MiB and trim, so this works on kernels that do
   * not align large anonymous mappings themselves (before 6.7). */
  char *raw = mmap(NULL, 2 * HUGE + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) die("mmap huge");
  char *huge = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
  if (huge > raw) munmap(raw, huge - raw);
  munmap(huge + 2 * HUGE, raw + 3 * HUGE - (huge + 2 * HUGE));
  if (madvise(huge, 2 * HUGE, MADV_HUGEPAGE)) die("madvise HUGEPAGE");

  char *small = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (small == MAP_FAILED) die("mmap small");
  if (madvise(small, 16 * PAGE, MADV_NOHUGEPAGE)) die("madvise NOHUGEPAGE");
  char *plain = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (plain == MAP_FAILED) die("mmap plain");
  if (madvise(plain, 8 * PAGE, MADV_NOHUGEPAGE)) die("madvise NOHUGEPAGE");

  for (unsigned i = 0; i < 16; i++) memset(huge + i * PAGE, 0x5a, PAGE);
  for (unsigned i = 16; i < 32; i++) unique(huge + i * PAGE, tag, 1, i);
  for (unsigned i = 0; i < 512; i++) unique(huge + HUGE + i * PAGE, tag, 2, i);
  for (unsigned i = 0; i < 4; i++) memset(small + i * PAGE, 0x5a, PAGE);
  for (unsigned i = 4; i < 8; i++) memset(small + i * PAGE, 0, PAGE);
  volatile char sink = 0;
  for (unsigned i = 8; i < 10; i++) sink += small[i * PAGE];
  (void)sink;
  for (unsigned i = 0; i < 8; i++) unique(plain + i * PAGE, tag, 3, i);

  if (merge) {
    if (madvise(huge, 2 * HUGE, MADV_MERGEABLE)) die("madvise MERGEABLE huge");
    if (madvise(small, 16 * PAGE, MADV_MERGEABLE)) die("madvise MERGEABLE small");
  }
  printf("ready %lx %lx %lx\n", (unsigned long)huge, (unsigned long)small, (unsigned long)plain);
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}
