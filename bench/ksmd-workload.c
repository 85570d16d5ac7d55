/*
 * ksmd-workload: the memory side of bench/calibrate-ksmd.ts, for the machine's real
 * KSM. The TypeScript side configures KSM, starts ksmd, reads its CPU time and builds
 * the same memory inside Samepage to count the work; this program only holds memory.
 *
 *   ksmd-workload REGION...      REGION: PAGES:PATTERN
 *
 * One process, one anonymous private mapping (MADV_NOHUGEPAGE, so every page is a
 * small page as in 2.6.33) holding the regions one after another in address order,
 * which is the order ksmd scans them. Page i of a region (i counted from the region's
 * start) holds, little-endian:
 *
 *   same:B      every byte B
 *   head:T      zero but for u32 i at byte 0 and u32 T at byte 4: pages of one region
 *               differ within their first 4 bytes
 *   tail:T      zero but for u32 T at byte 4088 and u32 i at byte 4092: pages of one
 *               region differ only in their last 4 bytes (ksmpages' worst case)
 *
 * Two regions with the same pattern hold the same pages, which merge in pairs.
 * After filling, the whole mapping is madvised MADV_MERGEABLE and "ready" printed.
 * Then each line on stdin "rewrite R G" rewrites region R as head:T with u32 G at
 * byte 8 (a new generation: every page changes) and prints "done"; EOF exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAX_REGIONS 16

#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif

struct region {
	unsigned long first, pages;
	char kind; /* 's', 'h', 't' */
	uint32_t arg;
};

static void put_u32(char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void fill(char *base, const struct region *r, uint32_t gen)
{
	for (unsigned long i = 0; i < r->pages; i++) {
		char *pg = base + (r->first + i) * PAGE;
		if (r->kind == 's') {
			memset(pg, (int)r->arg, PAGE);
			continue;
		}
		memset(pg, 0, PAGE);
		if (r->kind == 'h') {
			put_u32(pg, (uint32_t)i);
			put_u32(pg + 4, r->arg);
			put_u32(pg + 8, gen);
		} else {
			put_u32(pg + PAGE - 8, r->arg);
			put_u32(pg + PAGE - 4, (uint32_t)i);
		}
	}
}

int main(int argc, char **argv)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct region regions[MAX_REGIONS];
	int n = argc - 1;
	if (n < 1 || n > MAX_REGIONS) {
		fprintf(stderr, "usage: ksmd-workload PAGES:same:B|PAGES:head:T|PAGES:tail:T ... (1..%d regions)\n", MAX_REGIONS);
		return 2;
	}
	unsigned long total = 0;
	for (int k = 0; k < n; k++) {
		char kind[8];
		unsigned long pages, arg;
		if (sscanf(argv[k + 1], "%lu:%7[a-z]:%lu", &pages, kind, &arg) != 3 || pages == 0 ||
		    (strcmp(kind, "same") && strcmp(kind, "head") && strcmp(kind, "tail"))) {
			fprintf(stderr, "ksmd-workload: bad region '%s'\n", argv[k + 1]);
			return 2;
		}
		regions[k].first = total;
		regions[k].pages = pages;
		regions[k].kind = kind[0];
		regions[k].arg = (uint32_t)arg;
		total += pages;
	}
	size_t len = total * PAGE;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		fprintf(stderr, "ksmd-workload: mmap %zu bytes: %s\n", len, strerror(errno));
		return 1;
	}
	madvise(base, len, MADV_NOHUGEPAGE);
	for (int k = 0; k < n; k++)
		fill(base, &regions[k], 0);
	if (madvise(base, len, MADV_MERGEABLE)) {
		fprintf(stderr, "ksmd-workload: madvise(MADV_MERGEABLE): %s\n", strerror(errno));
		return 1;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	char line[128];
	while (fgets(line, sizeof line, stdin)) {
		int r;
		unsigned gen;
		if (sscanf(line, "rewrite %d %u", &r, &gen) != 2 || r < 0 || r >= n) {
			fprintf(stderr, "ksmd-workload: bad command '%s'\n", line);
			return 2;
		}
		regions[r].kind = 'h';
		fill(base, &regions[r], gen);
		printf("done\n");
		fflush(stdout);
	}
	return 0;
}
