/*
 * real-ksmpages: the memory side of Andrea Arcangeli's "ksmpages" benchmark (first KSM
 * posting, March 2009: seeds/003), for the machine's real KSM. bench/realKsmpages.ts
 * configures KSM, starts ksmd and times it; this program only builds the memory.
 *
 *   real-ksmpages MIB MODE        MODE: worst | best | distinct
 *
 * Two processes each mmap MIB MiB (MAP_PRIVATE|MAP_ANONYMOUS, MADV_NOHUGEPAGE so every
 * page is a small page as in 2.6.33), fill every page, and madvise it MADV_MERGEABLE.
 * Page i of either process holds, in the scenario language of test/oracle/scenario.ts:
 *
 *   worst     fill { byte: 0, tailTag: 1 }: zero but for its last 8 bytes, u32 1 and
 *             u32 i. Every page of one process differs from every other page of that
 *             process only at its tail, so each memcmp in a tree walk reads ~4 KiB;
 *             page i of the first process equals page i of the second. That is
 *             ksmpages as posted (it stored the page index in the last unsigned long,
 *             and two copies ran): "fully merged" is pages_shared = pages_sharing = N.
 *   best      fill { byte: 1 }: every page of both processes equal (Andrea's variant
 *             stored the constant 1 in the tail). Fully merged: one KSM page,
 *             pages_shared = 1, pages_sharing = 2N - 1.
 *   distinct  fill { byte: 0, tailTag: 1 + process }: like worst, but the second
 *             process uses another tag, so nothing can merge; done when all 2N pages
 *             sit in the unstable tree (pages_unshared = 2N). Not in the posting.
 *
 * Prints "ready PID1 PID2" once both processes are filled and registered, then waits
 * for stdin to reach EOF (or any line), kills both and exits. The processes die with
 * this program (PR_SET_PDEATHSIG), so an interrupted bench frees its memory.
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
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL

#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif

static void put_u32(char *p, uint32_t v)
{
	memcpy(p, &v, 4); /* x86/arm64: little-endian, as scenario.ts specifies */
}

static void child(unsigned long pages, const char *mode, int index, int ready_fd, int hold_fd)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	size_t len = pages * PAGE;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "real-ksmpages: mmap %zu bytes: %s\n", len, strerror(errno));
		_exit(1);
	}
	madvise(p, len, MADV_NOHUGEPAGE);
	int best = !strcmp(mode, "best");
	uint32_t tag = !strcmp(mode, "distinct") ? 1u + (uint32_t)index : 1u;
	for (unsigned long i = 0; i < pages; i++) {
		char *pg = p + i * PAGE;
		if (best) {
			memset(pg, 1, PAGE);
		} else {
			memset(pg, 0, PAGE);
			put_u32(pg + PAGE - 8, tag);
			put_u32(pg + PAGE - 4, (uint32_t)i);
		}
	}
	if (madvise(p, len, MADV_MERGEABLE)) {
		fprintf(stderr, "real-ksmpages: madvise(MADV_MERGEABLE): %s\n", strerror(errno));
		_exit(1);
	}
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	char c;
	while (read(hold_fd, &c, 1) > 0) /* EOF when the parent is gone or done */
		;
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[2], "worst") && strcmp(argv[2], "best") &&
			  strcmp(argv[2], "distinct"))) {
		fprintf(stderr, "usage: real-ksmpages MIB worst|best|distinct\n");
		return 1;
	}
	unsigned long mib = strtoul(argv[1], NULL, 10);
	if (!mib) {
		fprintf(stderr, "real-ksmpages: MIB must be a positive number\n");
		return 1;
	}
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	unsigned long pages = mib * (1024UL * 1024UL / PAGE);
	int ready[2], hold[2];
	if (pipe(ready) || pipe(hold)) {
		perror("real-ksmpages: pipe");
		return 1;
	}
	pid_t pid[2];
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		if (pid[i] < 0) {
			perror("real-ksmpages: fork");
			return 1;
		}
		if (pid[i] == 0) {
			close(ready[0]);
			close(hold[1]);
			child(pages, argv[2], i, ready[1], hold[0]);
		}
	}
	close(ready[1]);
	close(hold[0]);
	char c;
	int status = 0;
	for (int n = 0; n < 2; n++)
		if (read(ready[0], &c, 1) != 1) {
			fprintf(stderr, "real-ksmpages: a process failed before it was ready\n");
			status = 1;
			break;
		}
	if (!status) {
		printf("ready %d %d\n", (int)pid[0], (int)pid[1]);
		fflush(stdout);
		char line[64];
		(void)!read(0, line, sizeof line);
	}
	close(hold[1]);
	for (int i = 0; i < 2; i++) {
		kill(pid[i], SIGKILL);
		waitpid(pid[i], NULL, 0);
	}
	return status;
}
