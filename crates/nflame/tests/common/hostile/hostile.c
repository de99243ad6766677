/*
 * hostile: the target program of nflame's hostile-target tests
 * (crates/nflame/tests/hostile.rs). Built static, so that it runs alone in a
 * chroot, and copied into ELF files that lie about themselves.
 *
 * Usage: hostile [-c COMM] [-w] MODE ARGS... [IGNORED...]
 *   -c COMM  set the process name (prctl PR_SET_NAME), as any program may
 *   -w       after "ready", wait for SIGUSR1 before working
 * Every mode prints "ready" on stdout once set up, then works:
 *   spin SECONDS     main -> hostile_spin (0 seconds: until killed)
 *   jit SECONDS      runs a loop of machine code written into anonymous
 *                    executable memory at 0x7f0000000000 (JIT code, which
 *                    profilers name from /tmp/perf-PID.map)
 *   maprun FILE OFFSET SECONDS LINK
 *                    (after "ready" and, with -w, SIGUSR1) maps FILE
 *                    executable, calls the function at file offset
 *                    OFFSET for SECONDS, unmaps FILE, replaces it with a
 *                    symbolic link to LINK, prints "swapped", then spins
 *                    until killed
 * Arguments after those of the mode are ignored (a fake daemon's flags).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define JIT_ADDR ((void *)0x7f0000000000UL)

static volatile sig_atomic_t go;
static volatile uint64_t sink;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE uint64_t hostile_spin(uint64_t n)
{
	volatile uint64_t x = n;
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return x;
}

/* Works until `end` (0: for ever). */
NOINLINE void spin_until(double end)
{
	while (end == 0 || now() < end)
		sink += hostile_spin(20000);
}

static double deadline(const char *seconds)
{
	double s = atof(seconds);
	return s > 0 ? now() + s : 0;
}

static void ready(int wait)
{
	fputs("ready\n", stdout);
	fflush(stdout);
	while (wait && !go)
		pause();
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

/* A counting loop that returns: mov rcx, 0x40000; dec rcx; jnz; ret. */
static const unsigned char jit_x86_64[] = {
	0x48, 0xc7, 0xc1, 0x00, 0x00, 0x04, 0x00,
	0x48, 0xff, 0xc9,
	0x75, 0xfb,
	0xc3,
};
/* The same on arm64: mov x9, #0x40000; subs x9, x9, #1; b.ne; ret. */
static const uint32_t jit_arm64[] = {
	0xd2a00089, 0xf1000529, 0x54ffffe1, 0xd65f03c0,
};

NOINLINE void run_jit(double end)
{
	void *code = mmap(JIT_ADDR, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (code != JIT_ADDR)
		die("mmap JIT page");
#if defined(__x86_64__)
	memcpy(code, jit_x86_64, sizeof(jit_x86_64));
#elif defined(__aarch64__)
	memcpy(code, jit_arm64, sizeof(jit_arm64));
	__builtin___clear_cache((char *)code, (char *)code + sizeof(jit_arm64));
#else
#error "hostile: no JIT loop for this architecture"
#endif
	if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0)
		die("mprotect JIT page");
	void (*fn)(void) = (void (*)(void))code;
	ready(0);
	while (end == 0 || now() < end)
		fn();
}

NOINLINE void map_run(const char *file, const char *offset, const char *seconds,
		      const char *link, int wait)
{
	/* Mapped only once told to, so that a profiler already attached sees
	 * the mapping happen (and records the path as the container sees it). */
	ready(wait);
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(file);
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("fstat");
	char *base = mmap(NULL, st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (base == MAP_FAILED)
		die("mmap");
	close(fd);
	uint64_t (*fn)(uint64_t) = (uint64_t (*)(uint64_t))(base + strtoul(offset, NULL, 0));
	double end = deadline(seconds);
	while (now() < end)
		sink += fn(20000);
	if (munmap(base, st.st_size) != 0)
		die("munmap");
	if (unlink(file) != 0)
		die("unlink");
	if (symlink(link, file) != 0)
		die("symlink");
	fputs("swapped\n", stdout);
	fflush(stdout);
	spin_until(0);
}

int main(int argc, char **argv)
{
	int i = 1, wait = 0;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-c") && i + 1 < argc)
			prctl(PR_SET_NAME, argv[++i]);
		else if (!strcmp(argv[i], "-w"))
			wait = 1;
		else
			break;
	}
	signal(SIGUSR1, on_usr1);
	const char *mode = i < argc ? argv[i] : "";
	int n = argc - i - 1;
	if (!strcmp(mode, "spin") && n >= 1) {
		ready(wait);
		spin_until(deadline(argv[i + 1]));
	} else if (!strcmp(mode, "jit") && n >= 1) {
		run_jit(deadline(argv[i + 1]));
	} else if (!strcmp(mode, "maprun") && n >= 4) {
		map_run(argv[i + 1], argv[i + 2], argv[i + 3], argv[i + 4], wait);
	} else {
		fprintf(stderr, "usage: hostile [-c COMM] [-w] spin|jit|maprun ARGS...\n");
		return 2;
	}
	return 0;
}
