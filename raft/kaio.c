/* Kernel AIO contexts destroyed off the loop.
 *
 * raft_uv 0.15 gives every open segment of the log its own kernel AIO
 * context (io_setup) and destroys it (io_destroy), on the loop thread,
 * when it closes the segment. io_destroy(2) waits for an RCU grace period:
 * measured with strace -T on a leader under the store benchmark, 26 ms,
 * once per 8 MiB of log. For those milliseconds the loop stands still —
 * heartbeats, replication and every client's request — and on a busy
 * master this was the largest part of the write latency's tail.
 *
 * libraft (like libuv) enters the kernel for AIO through libc's syscall().
 * The definition below, linked into the executable, is the one the dynamic
 * linker gives them. io_destroy is handed to a short-lived detached thread
 * and reported done at once: raft_uv destroys a context only after its last
 * write has completed, so nothing is in flight and nobody waits for the
 * result. Every other call goes to libc's syscall() unchanged.
 * AEP_RAFT_IO_DESTROY=sync turns this off (for comparison). */
#include "raft/raft-int.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

typedef long (*syscall_fn)(long, ...);

static syscall_fn libc_syscall;
static bool destroy_async = true;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
	libc_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
	const char *mode = getenv("AEP_RAFT_IO_DESTROY");
	destroy_async = mode == NULL || strcmp(mode, "sync") != 0;
}

void raft__kaio_init(void)
{
	pthread_once(&once, init_once);
}

static void *destroy_ctx(void *arg)
{
	long *ctx = arg;
	libc_syscall(SYS_io_destroy, *ctx);
	aep_free(ctx);
	return NULL;
}

static bool destroy_later(long ctx)
{
	pthread_attr_t attr;
	pthread_t t;
	long *arg = aep_malloc(sizeof(*arg));
	bool ok = false;

	if (arg == NULL)
		return false;
	*arg = ctx;
	if (pthread_attr_init(&attr) == 0) {
		ok = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
		     pthread_create(&t, &attr, destroy_ctx, arg) == 0;
		pthread_attr_destroy(&attr);
	}
	if (!ok)
		aep_free(arg);
	return ok;
}

/* Linux system calls take at most six arguments, passed in registers:
 * reading six is what libc's own syscall() does. */
long syscall(long n, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, n);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	pthread_once(&once, init_once);
	if (n == SYS_io_destroy && destroy_async && destroy_later(a[0]))
		return 0;
	return libc_syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}
