#!/usr/bin/env bash
# Run the test suite (or part of it) with the clock set to another moment, through libfaketime.
#
#   tests/run_at.sh "2027-02-13 10:00:00" [pytest arguments...]
#
# The moment is UTC. The clock starts there and ticks on; every process the tests start inherits it
# (the embedded PostgreSQL server, so that now() agrees with Python, and the CLI/server subprocesses).
# It is an offset from the real clock (FAKETIME="+Ns"), not an absolute start ("@..."): with an
# absolute start each process would begin its own clock at that moment when it starts, and the
# server, started a few seconds after pytest, would lag it. The monotonic clock is shifted by the same
# offset: with FAKETIME_DONT_FAKE_MONOTONIC=1, libfaketime 0.9.10 makes every sleep fail (EINVAL).
#
# Two gaps of libfaketime 0.9.10 are filled by a small library compiled here (once, with cc) and
# loaded in front of it:
# - inside its wait wrappers (epoll_wait, poll, select, nanosleep...) it reads the real clock, so a
#   signal handler asking for the time there gets the real time. PostgreSQL's timeouts do exactly
#   that (statement_timeout, lock_timeout, deadlock detection): they re-armed for the offset and never
#   fired, and a deadlock hung the run. The library hands those waits, whose timeouts are relative,
#   straight to the C library.
# - it leaves the glibc 2.33 stat64 family alone (what Python calls), so a file written now looked as
#   old as the offset (the prefix directory's snapshot, judged by its age, was always stale). The
#   library adds the offset to the times stat reports and takes it off the times utime sets.
#
# Needs libfaketime (Debian: apt-get install faketime) and a C compiler. Not part of the default test
# command; use it to check that no test depends on the date, the weekday or the hour (a Saturday, a
# Monday, 23:59 UTC, 1 January). With DATABASE_URL set the server is not started here and keeps the
# real clock: leave DATABASE_URL unset.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 'YYYY-MM-DD HH:MM:SS' [pytest arguments...]" >&2
    exit 2
fi
moment=$1
shift

library=${FAKETIME_LIBRARY:-}
if [[ -z $library ]]; then
    for candidate in /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 \
        /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 \
        /usr/local/lib/faketime/libfaketime.so.1; do
        if [[ -e $candidate ]]; then
            library=$candidate
            break
        fi
    done
fi
if [[ -z $library || ! -e $library ]]; then
    echo "libfaketime not found (apt-get install faketime, or set FAKETIME_LIBRARY)" >&2
    exit 2
fi
if [[ -n ${DATABASE_URL:-} ]]; then
    echo "unset DATABASE_URL: an external server would keep the real clock" >&2
    exit 2
fi

# The waits and the file times (see above).
cache=${XDG_CACHE_HOME:-$HOME/.cache}/castmetrics
shim_source=$(
    cat <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

static long offset; /* seconds, from FAKETIME="+Ns" / "-Ns" */

#define REAL(name) static __typeof__(name) *real_##name;
REAL(epoll_wait) REAL(epoll_pwait) REAL(poll) REAL(ppoll) REAL(select) REAL(pselect) REAL(nanosleep)
REAL(usleep) REAL(sleep) REAL(stat64) REAL(lstat64) REAL(fstat64) REAL(fstatat64) REAL(utimensat) REAL(futimens)
REAL(utimes) REAL(utime)

__attribute__((constructor)) static void resolve(void) {
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!libc) libc = dlopen("libc.so.6", RTLD_NOW);
#define RESOLVE(name) real_##name = (__typeof__(name) *)dlsym(libc, #name);
    RESOLVE(epoll_wait) RESOLVE(epoll_pwait) RESOLVE(poll) RESOLVE(ppoll) RESOLVE(select) RESOLVE(pselect)
    RESOLVE(nanosleep) RESOLVE(usleep) RESOLVE(sleep) RESOLVE(stat64) RESOLVE(lstat64) RESOLVE(fstat64)
    RESOLVE(fstatat64) RESOLVE(utimensat) RESOLVE(futimens) RESOLVE(utimes) RESOLVE(utime)
    const char *spec = getenv("FAKETIME");
    char *end;
    if (spec && (spec[0] == '+' || spec[0] == '-')) {
        long value = strtol(spec, &end, 10);
        if (end != spec && (*end == 's' || *end == '\0')) offset = value;
    }
}

/* Waits: relative timeouts, straight to the C library. */
int epoll_wait(int fd, struct epoll_event *ev, int n, int ms) { return real_epoll_wait(fd, ev, n, ms); }
int epoll_pwait(int fd, struct epoll_event *ev, int n, int ms, const sigset_t *m) {
    return real_epoll_pwait(fd, ev, n, ms, m);
}
int poll(struct pollfd *fds, nfds_t n, int ms) { return real_poll(fds, n, ms); }
int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *m) {
    return real_ppoll(fds, n, t, m);
}
int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t) { return real_select(n, r, w, e, t); }
int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t, const sigset_t *m) {
    return real_pselect(n, r, w, e, t, m);
}
int nanosleep(const struct timespec *req, struct timespec *rem) { return real_nanosleep(req, rem); }
int usleep(useconds_t us) { return real_usleep(us); }
unsigned int sleep(unsigned int s) { return real_sleep(s); }

/* File times on the fake clock: read with the offset added, set with it taken off. */
static int shifted(int result, struct stat64 *st) {
    if (result == 0 && st) {
        st->st_atim.tv_sec += offset;
        st->st_mtim.tv_sec += offset;
        st->st_ctim.tv_sec += offset;
    }
    return result;
}
int stat64(const char *path, struct stat64 *st) { return shifted(real_stat64(path, st), st); }
int lstat64(const char *path, struct stat64 *st) { return shifted(real_lstat64(path, st), st); }
int fstat64(int fd, struct stat64 *st) { return shifted(real_fstat64(fd, st), st); }
int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) {
    return shifted(real_fstatat64(dirfd, path, st, flags), st);
}
static const struct timespec *unshifted(const struct timespec in[2], struct timespec out[2]) {
    if (!in) return NULL; /* now: the kernel's clock, which reads back shifted */
    for (int i = 0; i < 2; i++) {
        out[i] = in[i];
        if (in[i].tv_nsec != UTIME_NOW && in[i].tv_nsec != UTIME_OMIT) out[i].tv_sec -= offset;
    }
    return out;
}
int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags) {
    struct timespec real[2];
    return real_utimensat(dirfd, path, unshifted(times, real), flags);
}
int futimens(int fd, const struct timespec times[2]) {
    struct timespec real[2];
    return real_futimens(fd, unshifted(times, real));
}
int utimes(const char *path, const struct timeval times[2]) {
    if (!times) return real_utimes(path, NULL);
    struct timeval real[2] = {times[0], times[1]};
    real[0].tv_sec -= offset;
    real[1].tv_sec -= offset;
    return real_utimes(path, real);
}
int utime(const char *path, const struct utimbuf *times) {
    if (!times) return real_utime(path, NULL);
    struct utimbuf real = {times->actime - offset, times->modtime - offset};
    return real_utime(path, &real);
}
C
)
shim="$cache/faketime-fixes-$(printf '%s' "$shim_source" | sha256sum | cut -c1-12).so"
if [[ ! -e $shim ]]; then
    mkdir -p "$cache"
    printf '%s\n' "$shim_source" | ${CC:-cc} -shared -fPIC -O2 -x c -o "$shim.tmp" - -ldl
    mv "$shim.tmp" "$shim"
fi

target=$(date -u -d "$moment UTC" +%s)
offset=$((target - $(date -u +%s)))
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}

echo "clock: $(date -u -d "@$target" '+%A %Y-%m-%d %H:%M:%S UTC') (offset ${offset}s)" >&2
cd "$root"
if [[ $offset -ge 0 ]]; then offset="+$offset"; fi
exec env FAKETIME="${offset}s" LD_PRELOAD="$shim:$library${LD_PRELOAD:+:$LD_PRELOAD}" "$python" -m pytest "$@"
