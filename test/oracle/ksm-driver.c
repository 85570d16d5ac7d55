/*
 * ksm-driver: runs a differential Scenario (test/oracle/scenario.ts) on real processes
 * under the machine's KSM, and prints what each `settle` observed.
 *
 * It does NOT configure KSM: test/oracle/real.ts saves, configures and restores the
 * knobs around a run (with run=0). The one knob this program touches is `run`: ksmd
 * runs only inside a settle, as in the model, where ksmd scans only when a settle
 * asks it to. A settle writes run=1, waits for the scans, writes run=0 (which returns
 * between two scan batches) and reads the statistics and the digests; the steps in
 * between never race with ksmd (see settle()).
 *
 * Usage
 *   ksm-driver run  < scenario.txt   execute a scenario; one JSON line per settle on stdout
 *   ksm-driver lock PATH TIMEOUT_MS   take flock(LOCK_EX) on PATH, print "locked", hold it
 *                                     until stdin reaches EOF (so a dead caller frees it)
 *
 * Input of `run` (real.ts writes it; one item per line, fields separated by one space):
 *   samepage-scenario 1
 *   timeout_ms T                  per step; a settle may take this long to converge
 *   pause_for_stats 0|1
 *   modern 0|1                    optional (default 0). 1: Linux 6.x: each settle also
 *                                 reports 6.x's statistics and every live process's
 *                                 /proc/PID/ksm_stat, and must end after exactly SCANS
 *                                 full scans (see settle())
 *   procs N                       then N lines "proc I NAME"
 *   regions M                     then M lines "region J NAME"
 *   step K spawn P
 *   step K mmap P R PAGES PROT            PROT: none | r | rw
 *   step K munmap P R FIRST COUNT
 *   step K fill P R FIRST COUNT BYTE TAG TAILTAG     TAG, TAILTAG: u32 or "-"
 *   step K write P R OFFSET HEXBYTES
 *   step K madvise P R FIRST COUNT ADVICE         ADVICE: the MADV_* number
 *   step K mprotect P R FIRST COUNT PROT
 *   step K fork P C
 *   step K exit P
 *   step K settle SCANS
 *   step K prctl P ON                     prctl(PR_SET_MEMORY_MERGE, ON, 0, 0, 0)
 *   end
 * P, C are process indexes, R a region index, K the step's index in the scenario
 * (for error messages). Names are [A-Za-z0-9_.:-]+, so the JSON needs no escaping.
 *
 * Output of `run`: per settle, one line
 *   {"step":K,"fullScans":[F0,F1],"stats":{"pages_shared":..,"pages_sharing":..,
 *    "pages_unshared":..,"pages_volatile":..},"digests":{"proc/region":"hex8",...}}
 * and with `modern 1`, before "digests":
 *   "modern":{"ksm_zero_pages":..,"stable_node_chains":..,"stable_node_dups":..,
 *    "pages_scanned":..,"pages_skipped":..,"general_profit":..},
 *   "procs":{"NAME":{"ksm_rmap_items":..,"ksm_zero_pages":..,"ksm_merging_pages":..,
 *    "ksm_process_profit":..,"ksm_merge_any":0|1,"ksm_mergeable":0|1},...}
 * Errors: a message on stderr naming the step, every process killed, exit status 2.
 *
 * Processes. Slot I of the scenario is one real process. Before anything is forked the
 * supervisor creates a command pipe and an ack pipe for every slot, so every process --
 * including one created by an in-scenario fork, whose slot is chosen by the scenario --
 * inherits all of them. Each scenario process closes every command pipe's write end and
 * every ack pipe's read end at once: then only the supervisor can write commands, and
 * when the supervisor dies every process reads EOF and _exits (no orphans holding RAM).
 * `fork` makes the process itself call fork(), so the child shares its pages
 * copy-on-write exactly as in the scenario; the child takes over slot C.
 *
 * Each process keeps its own table of regions (address, and per page: mapped, prot,
 * VM_MERGEABLE), in its own memory, so a forked child inherits the table with the pages.
 *
 * Digest rule (the model side must do the same, see scenario.ts): for each region a
 * live process has (mmapped or inherited, even if now fully unmapped), FNV-1a 32 over
 * the bytes of the region's pages that are mapped and readable (prot r or rw), in
 * address order; pages that are unmapped or PROT_NONE are skipped. A region with no
 * readable page digests to 811c9dc5 (FNV's offset basis).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fill writes little-endian u32s with memcpy: port put_u32() first"
#endif

#define PAGE 4096L
#define KSM_DIR "/sys/kernel/mm/ksm/"

/* Per-page state bits in a process's region table. */
#define PG_MAPPED 0x1
#define PG_READ 0x2
#define PG_WRITE 0x4
#define PG_MERGEABLE 0x8 /* MADV_MERGEABLE applied and not undone (VM_MERGEABLE) */

#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif

static int nprocs, nregions;
static char **proc_names, **region_names;
static int *cmd_rd, *cmd_wr, *ack_rd, *ack_wr;
static pid_t *pids; /* supervisor: per slot, pid or 0 when not (or no longer) alive */
static long timeout_ms = 60000;
static int pause_for_stats = 1;
static int modern = 0;
/* This process's prctl(PR_SET_MEMORY_MERGE) (6.x): inherited by a forked child, as the kernel's. */
static int merge_any = 0;

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

/* ---------- small utilities ---------- */

static void die(const char *fmt, ...);

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		die("out of memory");
	return p;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000L, (us % 1000000L) * 1000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void put_u32(char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Line reader over a file descriptor with an optional deadline (deadline < 0: block).
 * Returns a NUL-terminated line without '\n', NULL on EOF; *timed_out is set on timeout.
 */
struct reader {
	int fd;
	char *buf;
	size_t len, cap;
	char *line; /* returned line, owned by the reader until the next call */
	size_t line_cap;
};

static void reader_init(struct reader *r, int fd)
{
	r->fd = fd;
	r->len = 0;
	if (!r->buf) {
		r->cap = 65536;
		r->buf = xcalloc(r->cap, 1);
	}
}

static char *reader_line(struct reader *r, long deadline, int *timed_out)
{
	*timed_out = 0;
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		if (nl) {
			size_t n = (size_t)(nl - r->buf);
			if (n + 1 > r->line_cap) {
				free(r->line);
				r->line_cap = n + 1;
				r->line = xcalloc(r->line_cap, 1);
			}
			memcpy(r->line, r->buf, n);
			r->line[n] = 0;
			memmove(r->buf, nl + 1, r->len - n - 1);
			r->len -= n + 1;
			return r->line;
		}
		if (r->len == r->cap) {
			r->cap *= 2;
			r->buf = realloc(r->buf, r->cap);
			if (!r->buf)
				die("out of memory");
		}
		if (deadline >= 0) {
			struct pollfd pfd = { r->fd, POLLIN, 0 };
			long left = deadline - now_ms();
			if (left <= 0) {
				*timed_out = 1;
				return NULL;
			}
			int pr = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
			if (pr < 0 && errno != EINTR)
				return NULL;
			if (pr <= 0)
				continue;
		}
		ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return NULL;
		}
		if (n == 0)
			return NULL;
		r->len += (size_t)n;
	}
}

/* ---------- the scenario process ---------- */

struct region {
	int present;
	char *addr;
	long pages;
	unsigned char *st; /* PG_* per page */
};

static struct region *regs; /* this process's regions, indexed like region_names */
static int my_slot;
static struct reader cmd_reader;

static void ack(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	if (write_all(ack_wr[my_slot], buf, (size_t)n))
		_exit(3);
}

static int prot_bits(const char *s)
{
	if (!strcmp(s, "none"))
		return 0;
	if (!strcmp(s, "r"))
		return PG_READ;
	if (!strcmp(s, "rw"))
		return PG_READ | PG_WRITE;
	return -1;
}

static int mman_prot(int bits)
{
	return (bits & PG_READ ? PROT_READ : 0) | (bits & PG_WRITE ? PROT_WRITE : 0);
}

/* Checks [first, first+count) lies inside region r of this process; 0 or sets why. */
static struct region *range_of(int r, long first, long count, const char **why)
{
	if (r < 0 || r >= nregions || !regs[r].present) {
		*why = "this process has no such region";
		return NULL;
	}
	if (first < 0 || count < 0 || first + count > regs[r].pages) {
		*why = "page range outside the region";
		return NULL;
	}
	return &regs[r];
}

static int all_pages(struct region *g, long first, long count, int need)
{
	for (long i = first; i < first + count; i++)
		if ((g->st[i] & need) != need)
			return 0;
	return 1;
}

static uint32_t digest_region(struct region *g)
{
	uint32_t h = 0x811c9dc5u;
	for (long i = 0; i < g->pages; i++) {
		if ((g->st[i] & (PG_MAPPED | PG_READ)) != (PG_MAPPED | PG_READ))
			continue;
		const unsigned char *p = (const unsigned char *)g->addr + i * PAGE;
		for (long b = 0; b < PAGE; b++) {
			h ^= p[b];
			h *= 0x01000193u;
		}
	}
	return h;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* MADV_UNMERGEABLE on every area of /proc/self/maps outside this process's regions. */
static void unmerge_all_but_regions(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return;
	char line[512];
	unsigned long starts[256], ends[256];
	int n = 0;
	/* Read them all first: madvise can split areas under a reader. */
	while (n < 256 && fgets(line, sizeof line, f))
		if (sscanf(line, "%lx-%lx", &starts[n], &ends[n]) == 2)
			n++;
	fclose(f);
	for (int i = 0; i < n; i++) {
		int ours = 0;
		for (int r = 0; r < nregions && !ours; r++)
			if (regs[r].present && starts[i] < (unsigned long)regs[r].addr + (unsigned long)(regs[r].pages * PAGE) &&
			    ends[i] > (unsigned long)regs[r].addr)
				ours = 1;
		if (!ours)
			madvise((void *)starts[i], ends[i] - starts[i], MADV_UNMERGEABLE); /* [vsyscall] and the like refuse: fine */
	}
}

/* One command, already split into words. The reply is one ack line ("ok ..." / "err ..."). */
static void proc_command(char **w, int nw)
{
	const char *why = NULL;
	const char *op = w[0];

	if (!strcmp(op, "mmap") && nw == 4) {
		int r = atoi(w[1]);
		long pages = atol(w[2]);
		int bits = prot_bits(w[3]);
		if (r < 0 || r >= nregions || regs[r].present)
			return ack("err region already exists in this process");
		if (pages <= 0 || bits < 0)
			return ack("err bad pages or prot");
		char *a = mmap(NULL, (size_t)(pages * PAGE), mman_prot(bits),
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (a == MAP_FAILED)
			return ack("err mmap: %s", strerror(errno));
		/* 2.6.33 has no THP: keep every page a small page (errors ignored: no THP). */
		madvise(a, (size_t)(pages * PAGE), MADV_NOHUGEPAGE);
		regs[r].present = 1;
		regs[r].addr = a;
		regs[r].pages = pages;
		regs[r].st = xcalloc((size_t)pages, 1);
		/* With PR_SET_MEMORY_MERGE on, a new area is VM_MERGEABLE from birth. */
		memset(regs[r].st, PG_MAPPED | bits | (merge_any ? PG_MERGEABLE : 0), (size_t)pages);
		return ack("ok %p", (void *)a);
	}
	if (!strcmp(op, "munmap") && nw == 4) {
		long first = atol(w[2]), count = atol(w[3]);
		struct region *g = range_of(atoi(w[1]), first, count, &why);
		if (!g)
			return ack("err %s", why);
		if (munmap(g->addr + first * PAGE, (size_t)(count * PAGE)))
			return ack("err munmap: %s", strerror(errno));
		memset(g->st + first, 0, (size_t)count);
		return ack("ok");
	}
	if (!strcmp(op, "fill") && nw == 7) {
		long first = atol(w[2]), count = atol(w[3]);
		int byte = atoi(w[4]);
		struct region *g = range_of(atoi(w[1]), first, count, &why);
		if (!g)
			return ack("err %s", why);
		if (!all_pages(g, first, count, PG_MAPPED | PG_WRITE))
			return ack("err fill of a page that is not mapped writable (EFAULT)");
		int has_tag = strcmp(w[5], "-") != 0, has_tail = strcmp(w[6], "-") != 0;
		uint32_t tag = (uint32_t)strtoul(w[5], NULL, 10);
		uint32_t tail = (uint32_t)strtoul(w[6], NULL, 10);
		for (long i = first; i < first + count; i++) {
			char *p = g->addr + i * PAGE;
			memset(p, byte, PAGE);
			if (has_tag) {
				put_u32(p, tag);
				put_u32(p + 4, (uint32_t)i);
			}
			if (has_tail) {
				put_u32(p + PAGE - 8, tail);
				put_u32(p + PAGE - 4, (uint32_t)i);
			}
		}
		return ack("ok");
	}
	if (!strcmp(op, "write") && nw == 4) {
		int r = atoi(w[1]);
		long off = atol(w[2]);
		const char *hex = strcmp(w[3], "-") ? w[3] : ""; /* "-": no bytes */
		long n = (long)strlen(hex) / 2;
		if (r < 0 || r >= nregions || !regs[r].present)
			return ack("err this process has no such region");
		struct region *g = &regs[r];
		if (off < 0 || off + n > g->pages * PAGE)
			return ack("err write outside the region");
		if (n && !all_pages(g, off / PAGE, (off + n - 1) / PAGE - off / PAGE + 1,
				    PG_MAPPED | PG_WRITE))
			return ack("err write to a page that is not mapped writable (EFAULT)");
		for (long i = 0; i < n; i++) {
			int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return ack("err bad hex at byte %ld", i);
			g->addr[off + i] = (char)(hi << 4 | lo);
		}
		return ack("ok");
	}
	if (!strcmp(op, "madvise") && nw == 5) {
		long first = atol(w[2]), count = atol(w[3]);
		int advice = atoi(w[4]);
		struct region *g = range_of(atoi(w[1]), first, count, &why);
		if (!g)
			return ack("err %s", why);
		if (madvise(g->addr + first * PAGE, (size_t)(count * PAGE), advice))
			return ack("err madvise(%d): %s", advice, strerror(errno));
		for (long i = first; i < first + count; i++) {
			if (!(g->st[i] & PG_MAPPED))
				continue;
			if (advice == MADV_MERGEABLE)
				g->st[i] |= PG_MERGEABLE;
			else if (advice == MADV_UNMERGEABLE)
				g->st[i] &= (unsigned char)~PG_MERGEABLE;
		}
		return ack("ok");
	}
	if (!strcmp(op, "mprotect") && nw == 5) {
		long first = atol(w[2]), count = atol(w[3]);
		int bits = prot_bits(w[4]);
		struct region *g = range_of(atoi(w[1]), first, count, &why);
		if (!g)
			return ack("err %s", why);
		if (bits < 0)
			return ack("err bad prot");
		if (mprotect(g->addr + first * PAGE, (size_t)(count * PAGE), mman_prot(bits)))
			return ack("err mprotect: %s", strerror(errno));
		for (long i = first; i < first + count; i++)
			g->st[i] = (unsigned char)((g->st[i] & (PG_MAPPED | PG_MERGEABLE)) | bits);
		return ack("ok");
	}
	if (!strcmp(op, "fork") && nw == 2) {
		int c = atoi(w[1]);
		if (c < 0 || c >= nprocs)
			return ack("err bad child slot");
		pid_t pid = fork();
		if (pid < 0)
			return ack("err fork: %s", strerror(errno));
		if (pid == 0) {
			/* The child: same pages, same region table; it now serves slot c. */
			my_slot = c;
			reader_init(&cmd_reader, cmd_rd[c]);
			return;
		}
		return ack("ok %d", (int)pid);
	}
	if (!strcmp(op, "exit") && nw == 1) {
		ack("ok");
		_exit(0);
	}
	if (!strcmp(op, "prctl") && nw == 2) {
		int on = atoi(w[1]);
		if (prctl(PR_SET_MEMORY_MERGE, (unsigned long)on, 0UL, 0UL, 0UL))
			return ack("err prctl(PR_SET_MEMORY_MERGE, %d): %s", on, strerror(errno));
		merge_any = on;
		/*
		 * On, the kernel made every area of this process mergeable: its stack, heap
		 * and libraries' data too, which the model's process does not have. Take
		 * those out again (MADV_UNMERGEABLE clears VM_MERGEABLE, merge-any or not),
		 * so that only the scenario's regions are KSM's. Nothing here maps a new
		 * area afterwards: a region's table is a small calloc from the heap.
		 */
		if (on)
			unmerge_all_but_regions();
		/* On: every area is mergeable. Off: every area is unmerged, madvised ones too. */
		for (int r = 0; r < nregions; r++)
			for (long i = 0; regs[r].present && i < regs[r].pages; i++) {
				if (!(regs[r].st[i] & PG_MAPPED))
					continue;
				if (on)
					regs[r].st[i] |= PG_MERGEABLE;
				else
					regs[r].st[i] &= (unsigned char)~PG_MERGEABLE;
			}
		return ack("ok");
	}
	if (!strcmp(op, "mergeable") && nw == 1) {
		int any = 0;
		for (int r = 0; r < nregions && !any; r++)
			for (long i = 0; regs[r].present && i < regs[r].pages; i++)
				if ((regs[r].st[i] & (PG_MAPPED | PG_MERGEABLE)) ==
				    (PG_MAPPED | PG_MERGEABLE)) {
					any = 1;
					break;
				}
		return ack("ok %d", any);
	}
	if (!strcmp(op, "digest") && nw == 1) {
		/* One line per region, then the ack. */
		for (int r = 0; r < nregions; r++) {
			if (!regs[r].present)
				continue;
			char line[64];
			int n = snprintf(line, sizeof line, "d %d %08x\n", r, digest_region(&regs[r]));
			if (write_all(ack_wr[my_slot], line, (size_t)n))
				_exit(3);
		}
		return ack("ok");
	}
	ack("err unknown command '%s' with %d words", op, nw);
}

static int split_words(char *s, char **w, int max)
{
	int n = 0;
	while (*s && n < max) {
		while (*s == ' ')
			s++;
		if (!*s)
			break;
		w[n++] = s;
		while (*s && *s != ' ')
			s++;
		if (*s)
			*s++ = 0;
	}
	return n;
}

static void proc_main(int slot)
{
	/* Only the supervisor writes commands and reads acks: see the header comment. */
	for (int i = 0; i < nprocs; i++) {
		close(cmd_wr[i]);
		close(ack_rd[i]);
	}
	signal(SIGCHLD, SIG_IGN); /* a child forked by the scenario is reaped by the kernel */
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_IGN); /* ^C goes to the supervisor, which kills us */
	my_slot = slot;
	pids = NULL; /* the supervisor's table: not ours to kill */
	regs = xcalloc((size_t)nregions, sizeof *regs);
	reader_init(&cmd_reader, cmd_rd[slot]);
	for (;;) {
		int to;
		char *line = reader_line(&cmd_reader, -1, &to);
		if (!line)
			_exit(0); /* the supervisor is gone */
		char *w[8];
		int nw = split_words(line, w, 8);
		if (nw == 0)
			continue;
		proc_command(w, nw);
	}
}

/* ---------- the supervisor ---------- */

static pid_t *direct;	  /* per slot: 1 if the supervisor forked it (must waitpid) */
static struct reader *ack_readers;
static int cur_step = -1;
static const char *cur_op = "setup";

static void kill_all(void)
{
	for (int i = 0; i < nprocs; i++)
		if (pids && pids[i] > 0)
			kill(pids[i], SIGKILL);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	if (cur_step >= 0)
		fprintf(stderr, "ksm-driver: step %d (%s): ", cur_step, cur_op);
	else
		fprintf(stderr, "ksm-driver: %s: ", cur_op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (!pids)
		_exit(2); /* a scenario process: the supervisor reports it through the ack */
	kill_all();
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	exit(2);
}

static void on_signal(int sig)
{
	for (int i = 0; i < nprocs; i++)
		if (pids && pids[i] > 0)
			kill(pids[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static long read_ksm(const char *name)
{
	char path[256], buf[64];
	snprintf(path, sizeof path, KSM_DIR "%s", name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		die("read %s: %s", path, n < 0 ? strerror(errno) : "empty");
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

static void write_ksm(const char *name, long v)
{
	char path[256], buf[32];
	snprintf(path, sizeof path, KSM_DIR "%s", name);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	int n = snprintf(buf, sizeof buf, "%ld", v);
	if (write(fd, buf, (size_t)n) != n)
		die("write %s=%ld: %s", path, v, strerror(errno));
	close(fd);
}

/* Sends one command line to slot p; the line must not contain '\n'. */
static void send_cmd(int p, const char *line)
{
	long deadline = now_ms() + timeout_ms;
	size_t len = strlen(line) + 1;
	char *msg = xcalloc(len + 1, 1);
	memcpy(msg, line, len - 1);
	msg[len - 1] = '\n';
	const char *s = msg;
	/* Non-blocking write + poll: a dead process must not hang us on a full pipe. */
	while (len) {
		struct pollfd pfd = { cmd_wr[p], POLLOUT, 0 };
		long left = deadline - now_ms();
		if (left <= 0)
			die("timed out sending a command to process %s", proc_names[p]);
		if (poll(&pfd, 1, (int)(left > 1000 ? 1000 : left)) <= 0)
			continue;
		ssize_t n = write(cmd_wr[p], s, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("write to process %s: %s", proc_names[p], strerror(errno));
		}
		s += n;
		len -= (size_t)n;
	}
	free(msg);
}

static int exited(pid_t pid, int is_direct);

/* Waits for the next ack line from slot p; dies on "err", timeout or a dead process. */
static char *recv_line(int p)
{
	long deadline = now_ms() + timeout_ms;
	for (;;) {
		int to;
		long step_deadline = now_ms() + 200;
		char *line = reader_line(&ack_readers[p], step_deadline < deadline ? step_deadline : deadline, &to);
		if (line) {
			if (!strncmp(line, "err", 3))
				die("process %s: %s", proc_names[p], line[3] ? line + 4 : "error");
			return line;
		}
		if (!to)
			die("ack pipe of process %s closed", proc_names[p]);
		if (pids[p] > 0 && exited(pids[p], direct[p]))
			die("process %s (pid %d) died", proc_names[p], (int)pids[p]);
		if (now_ms() >= deadline)
			die("process %s did not answer in %ld ms", proc_names[p], timeout_ms);
	}
}

static char *command(int p, const char *line)
{
	if (p < 0 || p >= nprocs || pids[p] <= 0)
		die("process %s is not alive", p >= 0 && p < nprocs ? proc_names[p] : "?");
	send_cmd(p, line);
	return recv_line(p);
}

/* Has pid exited (its mm torn down)? A zombie has released its mm already. */
static int exited(pid_t pid, int is_direct)
{
	if (is_direct) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return 1;
	}
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	if (!rp || rp[1] != ' ')
		return 0;
	return rp[2] == 'Z' || rp[2] == 'X';
}

static void wait_exited(int p)
{
	long deadline = now_ms() + timeout_ms;
	while (!exited(pids[p], direct[p])) {
		if (now_ms() > deadline)
			die("process %s (pid %d) did not exit in %ld ms", proc_names[p],
			    (int)pids[p], timeout_ms);
		sleep_us(500);
	}
	pids[p] = 0;
}

/*
 * /proc/PID/ksm_stat as a JSON object: "ksm_rmap_items N" lines become numbers,
 * "ksm_merge_any: yes|no" lines 1 or 0.
 */
static void print_ksm_stat(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/ksm_stat", (int)pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		die("read %s: %s", path, n < 0 ? strerror(errno) : "empty");
	buf[n] = 0;
	printf("{");
	int first = 1;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char key[64], val[32];
		if (sscanf(line, "%63[a-z_]%*[: ]%31s", key, val) != 2)
			die("%s: unexpected line '%s'", path, line);
		long v = !strcmp(val, "yes") ? 1 : !strcmp(val, "no") ? 0 : atol(val);
		printf("%s\"%s\":%ld", first ? "" : ",", key, v);
		first = 0;
	}
	printf("}");
}

static void settle(int scans)
{
	int any_mergeable = 0;
	for (int p = 0; p < nprocs; p++)
		if (pids[p] > 0 && atoi(command(p, "mergeable") + 3))
			any_mergeable = 1;

	/*
	 * ksmd runs only during a settle; the cursor stays where the last one left it.
	 * In modern mode the count starts before run=1, or a scan ksmd finished before
	 * we read would go uncounted (one scan more than asked).
	 */
	long f0 = modern ? read_ksm("full_scans") : 0;
	write_ksm("run", 1);
	if (!modern)
		f0 = read_ksm("full_scans");
	long f1 = f0;
	long deadline = now_ms() + timeout_ms;
	if (any_mergeable) {
		/* ksmd runs while any mm has a VM_MERGEABLE vma: wait for the scans. */
		while ((f1 = read_ksm("full_scans")) < f0 + scans) {
			if (now_ms() > deadline)
				die("full_scans advanced only from %ld to %ld in %ld ms (wanted +%d)",
				    f0, f1, timeout_ms, scans);
			sleep_us(1000);
		}
	} else {
		/*
		 * No live mm has a VM_MERGEABLE vma: ksmd drops the remaining mm_slots (exited
		 * or unmerged mms) on its next pass and then sleeps, so full_scans may never
		 * advance. Converged means every rmap_item is gone.
		 */
		for (;;) {
			long s = read_ksm("pages_shared") + read_ksm("pages_sharing") +
				 read_ksm("pages_unshared") + read_ksm("pages_volatile");
			if (s == 0)
				break;
			if (now_ms() > deadline)
				die("no mergeable vma left, but the KSM statistics did not drop to 0 in %ld ms",
				    timeout_ms);
			sleep_us(1000);
		}
		f1 = read_ksm("full_scans");
	}

	/*
	 * The four statistics are separate files and ksmd updates them page by page, so
	 * reading them while ksmd scans can catch an rmap_item between its removal from a
	 * tree and its reinsertion (unshared one lower, volatile one higher). Writing run=0
	 * takes ksm_thread_mutex, which ksmd holds for a whole batch: when the write
	 * returns, ksmd is between batches and every count is consistent. ksmd then stays
	 * paused until the next settle.
	 */
	if (pause_for_stats)
		write_ksm("run", 0);
	/*
	 * 6.x (modern): the statistics must be those of exactly SCANS full scans (smart
	 * scan skips a page for a number of scans, so one more scan can change them).
	 * real.ts runs these sessions with pages_to_scan above any scenario's pages, so
	 * that one batch is one whole full scan, and sleep_millisecs long enough that
	 * the run=0 above lands in ksmd's nap after the last one.
	 */
	if (modern && any_mergeable && read_ksm("full_scans") != f0 + scans)
		die("settle wanted exactly %d full scans, ksmd did %ld (pages_to_scan too low, or a nap too short)",
		    scans, read_ksm("full_scans") - f0);
	long shared = read_ksm("pages_shared");
	long sharing = read_ksm("pages_sharing");
	long unshared = read_ksm("pages_unshared");
	long volat = read_ksm("pages_volatile");

	printf("{\"step\":%d,\"fullScans\":[%ld,%ld],\"stats\":{\"pages_shared\":%ld,"
	       "\"pages_sharing\":%ld,\"pages_unshared\":%ld,\"pages_volatile\":%ld},",
	       cur_step, f0, f1, shared, sharing, unshared, volat);
	if (modern) {
		printf("\"modern\":{\"ksm_zero_pages\":%ld,\"stable_node_chains\":%ld,\"stable_node_dups\":%ld,"
		       "\"pages_scanned\":%ld,\"pages_skipped\":%ld,\"general_profit\":%ld},\"procs\":{",
		       read_ksm("ksm_zero_pages"), read_ksm("stable_node_chains"), read_ksm("stable_node_dups"),
		       read_ksm("pages_scanned"), read_ksm("pages_skipped"), read_ksm("general_profit"));
		int firstp = 1;
		for (int p = 0; p < nprocs; p++) {
			if (pids[p] <= 0)
				continue;
			printf("%s\"%s\":", firstp ? "" : ",", proc_names[p]);
			print_ksm_stat(pids[p]);
			firstp = 0;
		}
		printf("},");
	}
	printf("\"digests\":{");
	/* Digests after the stats: reading untouched pages maps the zero page, not counted. */
	int first = 1;
	for (int p = 0; p < nprocs; p++) {
		if (pids[p] <= 0)
			continue;
		send_cmd(p, "digest");
		for (;;) {
			char *line = recv_line(p);
			if (!strncmp(line, "ok", 2))
				break;
			int r;
			char hex[16];
			if (sscanf(line, "d %d %15s", &r, hex) != 2 || r < 0 || r >= nregions)
				die("bad digest line from %s: %s", proc_names[p], line);
			printf("%s\"%s/%s\":\"%s\"", first ? "" : ",", proc_names[p], region_names[r], hex);
			first = 0;
		}
	}
	printf("}}\n");
	fflush(stdout);
}

static pid_t spawn_slot(int p)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0)
		proc_main(p); /* never returns */
	return pid;
}

static int idx_of(const char *s, int n, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < 0 || v >= n)
		die("bad %s index '%s'", what, s);
	return (int)v;
}

static int run_main(void)
{
	struct reader in = { 0 };
	int to;
	char *line, *w[16];
	int nw;

	reader_init(&in, 0);
	line = reader_line(&in, -1, &to);
	if (!line || strcmp(line, "samepage-scenario 1"))
		die("input does not start with 'samepage-scenario 1'");

	/* Header. */
	for (;;) {
		line = reader_line(&in, -1, &to);
		if (!line)
			die("input ended inside the header");
		nw = split_words(line, w, 16);
		if (nw == 2 && !strcmp(w[0], "timeout_ms"))
			timeout_ms = atol(w[1]);
		else if (nw == 2 && !strcmp(w[0], "pause_for_stats"))
			pause_for_stats = atoi(w[1]);
		else if (nw == 2 && !strcmp(w[0], "modern"))
			modern = atoi(w[1]);
		else if (nw == 2 && !strcmp(w[0], "procs")) {
			nprocs = atoi(w[1]);
			proc_names = xcalloc((size_t)nprocs, sizeof *proc_names);
			for (int i = 0; i < nprocs; i++) {
				line = reader_line(&in, -1, &to);
				if (!line || split_words(line, w, 16) != 3 || strcmp(w[0], "proc") ||
				    atoi(w[1]) != i)
					die("expected 'proc %d NAME'", i);
				proc_names[i] = strdup(w[2]);
			}
		} else if (nw == 2 && !strcmp(w[0], "regions")) {
			nregions = atoi(w[1]);
			region_names = xcalloc((size_t)nregions, sizeof *region_names);
			for (int i = 0; i < nregions; i++) {
				line = reader_line(&in, -1, &to);
				if (!line || split_words(line, w, 16) != 3 || strcmp(w[0], "region") ||
				    atoi(w[1]) != i)
					die("expected 'region %d NAME'", i);
				region_names[i] = strdup(w[2]);
			}
		} else if (nw >= 1 && !strcmp(w[0], "step")) {
			break;
		} else if (nw == 1 && !strcmp(w[0], "end")) {
			break;
		} else
			die("unknown header line '%s'", line);
	}

	/* Every pipe before any fork: see the header comment. */
	cmd_rd = xcalloc((size_t)nprocs, sizeof(int));
	cmd_wr = xcalloc((size_t)nprocs, sizeof(int));
	ack_rd = xcalloc((size_t)nprocs, sizeof(int));
	ack_wr = xcalloc((size_t)nprocs, sizeof(int));
	pids = xcalloc((size_t)nprocs, sizeof(pid_t));
	direct = xcalloc((size_t)nprocs, sizeof(pid_t));
	ack_readers = xcalloc((size_t)nprocs, sizeof *ack_readers);
	for (int i = 0; i < nprocs; i++) {
		int c[2], a[2];
		if (pipe2(c, O_CLOEXEC) || pipe2(a, O_CLOEXEC))
			die("pipe: %s", strerror(errno));
		cmd_rd[i] = c[0];
		cmd_wr[i] = c[1];
		ack_rd[i] = a[0];
		ack_wr[i] = a[1];
		fcntl(cmd_wr[i], F_SETFL, O_NONBLOCK);
		reader_init(&ack_readers[i], ack_rd[i]);
	}

	for (;;) {
		/* `line`/`w` hold the current step (the header loop stopped on it). */
		if (nw == 1 && !strcmp(w[0], "end"))
			break;
		if (nw < 3 || strcmp(w[0], "step"))
			die("expected a step line, found '%s'", w[0]);
		cur_step = atoi(w[1]);
		cur_op = w[2];
		char **a = w + 3;
		int na = nw - 3;
		char buf[256];

		if (!strcmp(cur_op, "spawn") && na == 1) {
			int p = idx_of(a[0], nprocs, "process");
			if (pids[p])
				die("process %s already exists", proc_names[p]);
			pids[p] = spawn_slot(p);
			direct[p] = 1;
		} else if (!strcmp(cur_op, "fork") && na == 2) {
			int p = idx_of(a[0], nprocs, "process"), c = idx_of(a[1], nprocs, "process");
			if (pids[c])
				die("process %s already exists", proc_names[c]);
			snprintf(buf, sizeof buf, "fork %d", c);
			fflush(stdout);
			char *ok = command(p, buf);
			pids[c] = (pid_t)atoi(ok + 3);
			direct[c] = 0;
			if (pids[c] <= 0)
				die("fork of %s returned no pid", proc_names[p]);
		} else if (!strcmp(cur_op, "exit") && na == 1) {
			int p = idx_of(a[0], nprocs, "process");
			command(p, "exit");
			wait_exited(p);
		} else if (!strcmp(cur_op, "settle") && na == 1) {
			settle(atoi(a[0]));
		} else if (!strcmp(cur_op, "prctl") && na == 2) {
			int p = idx_of(a[0], nprocs, "process");
			snprintf(buf, sizeof buf, "prctl %d", atoi(a[1]) ? 1 : 0);
			command(p, buf);
		} else if ((!strcmp(cur_op, "mmap") && na == 4) || (!strcmp(cur_op, "munmap") && na == 4) ||
			   (!strcmp(cur_op, "fill") && na == 7) || (!strcmp(cur_op, "write") && na == 4) ||
			   (!strcmp(cur_op, "madvise") && na == 5) ||
			   (!strcmp(cur_op, "mprotect") && na == 5)) {
			/* Forward "op R ..." (without P) to process P, whose table knows R. */
			int p = idx_of(a[0], nprocs, "process");
			idx_of(a[1], nregions, "region");
			size_t len = strlen(cur_op) + 1;
			for (int i = 1; i < na; i++)
				len += strlen(a[i]) + 1;
			char *cmd = xcalloc(len + 1, 1);
			strcpy(cmd, cur_op);
			for (int i = 1; i < na; i++) {
				strcat(cmd, " ");
				strcat(cmd, a[i]);
			}
			command(p, cmd);
			free(cmd);
		} else
			die("unknown step or wrong number of fields (%d)", na);

		line = reader_line(&in, -1, &to);
		if (!line)
			die("input ended without 'end'");
		nw = split_words(line, w, 16);
	}

	/* Done: every live process exits, so its memory is gone before real.ts restores. */
	cur_step = -1;
	cur_op = "teardown";
	for (int p = 0; p < nprocs; p++) {
		if (pids[p] <= 0)
			continue;
		send_cmd(p, "exit");
		(void)recv_line(p);
		wait_exited(p);
	}
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	return 0;
}

/* ---------- the lock helper ---------- */

static int lock_main(const char *path, long tmo)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (fd < 0) {
		fprintf(stderr, "ksm-driver lock: open %s: %s\n", path, strerror(errno));
		return 2;
	}
	long deadline = now_ms() + tmo;
	int said = 0;
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			fprintf(stderr, "ksm-driver lock: flock %s: %s\n", path, strerror(errno));
			return 2;
		}
		if (!said) {
			char who[128] = "";
			ssize_t n = pread(fd, who, sizeof who - 1, 0);
			if (n > 0)
				who[n] = 0;
			who[strcspn(who, "\n")] = 0;
			printf("waiting %s\n", who);
			fflush(stdout);
			said = 1;
		}
		if (now_ms() > deadline) {
			printf("timeout\n");
			fflush(stdout);
			return 3;
		}
		sleep_us(50000);
	}
	char who[128];
	int n = snprintf(who, sizeof who, "pid %d (node pid %d)\n", (int)getpid(), (int)getppid());
	if (ftruncate(fd, 0) == 0)
		(void)pwrite(fd, who, (size_t)n, 0);
	printf("locked\n");
	fflush(stdout);
	/* Hold the lock until our caller closes stdin or dies. */
	char buf[256];
	while (read(0, buf, sizeof buf) > 0)
		;
	return 0;
}

int main(int argc, char **argv)
{
	/* If real.ts dies, we die too, and our processes see EOF and exit. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (argc == 4 && !strcmp(argv[1], "lock"))
		return lock_main(argv[2], atol(argv[3]));
	if (argc == 2 && !strcmp(argv[1], "run")) {
		signal(SIGTERM, on_signal);
		signal(SIGINT, on_signal);
		signal(SIGHUP, on_signal);
		signal(SIGPIPE, SIG_IGN);
		return run_main();
	}
	fprintf(stderr, "usage: ksm-driver run < scenario | ksm-driver lock PATH TIMEOUT_MS\n");
	return 1;
}
