/* fault: failures on purpose, for a test build of vaed (BUILD/tests/vaed_fault),
 * in the manner of SQLite's test_malloc.c: the N-th allocation, write, fsync
 * or rename fails, and the test checks that the daemon answers with a clean
 * error, leaks nothing, keeps its registry whole and goes on serving.
 *
 *     // the test (tests/http/test_faults.c), against a daemon started with
 *     // VAED_FAULT_CTL=DIR/fault in its environment:
 *     fault_ctl ctl;
 *     fault_ctl_init(&ctl, "DIR/fault", pid);
 *     fault_ctl_arm(&ctl, FAULT_ALLOC, 37);        // the 37th allocation from now fails
 *     ... the request under test ...
 *     fault_counts n;
 *     fault_ctl_disarm(&ctl, &n);                  // n.fired: faults injected, n.calls: calls seen
 *
 *     // daemon start: VAED_FAULT="alloc 37" (or "write 2") arms it
 *     // before main, and the daemon must exit with a message or serve.
 *
 * What fails and how, in the daemon's own code (the objects are linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=write,
 * --wrap=fsync,--wrap=rename, see the Makefile) and in the libraries it calls
 * through hooks: malloc, calloc, realloc, strdup and cJSON's and SQLite's
 * allocators return NULL (ENOMEM); write and SQLite's xWrite fail as a full
 * disk (ENOSPC, SQLITE_FULL); fsync and SQLite's xSync, and rename, fail with
 * EIO (SQLITE_IOERR_FSYNC). SQLite is reached through a VFS ("fault")
 * registered as the default over the real one, so every statement's step
 * can fail where SQLite writes.
 *
 * The daemon side is a constructor and a SIGUSR1 handler in fault_inject.c:
 * on the signal it reads the control file (one line: "SEQ KIND N", KIND 0
 * to disarm), resets the counters and writes "SEQ FIRED CALLS" to CTL.ack,
 * where FIRED and CALLS are what the previous arming saw. N counts calls of
 * KIND from the arming, in any thread; only the N-th fails.
 */
#ifndef FAULT_H
#define FAULT_H

#include <stdint.h>
#include <sys/types.h>

typedef enum {
    FAULT_NONE = 0,
    FAULT_ALLOC,  /* malloc, calloc, realloc, strdup, cJSON's and SQLite's allocators */
    FAULT_WRITE,  /* write, SQLite's xWrite */
    FAULT_FSYNC,  /* fsync, SQLite's xSync */
    FAULT_RENAME, /* rename */
    FAULT_KIND_COUNT
} fault_kind;

/* "alloc", "write", "fsync", "rename" (and "off" for FAULT_NONE). */
const char *fault_kind_name(fault_kind k);

typedef struct {
    int64_t fired; /* calls made to fail */
    int64_t calls; /* calls of the armed kind seen */
} fault_counts;

/* ---- the test's side ---- */

typedef struct {
    char path[512]; /* the control file; its answer is path + ".ack" */
    pid_t pid;      /* the daemon */
    int seq;
} fault_ctl;

void fault_ctl_init(fault_ctl *ctl, const char *path, pid_t pid);
/* Arms kind at the n-th call from now and waits until the daemon has done
 * so. 0, or -1 (printed why). */
int fault_ctl_arm(fault_ctl *ctl, fault_kind kind, int64_t n);
/* Disarms; counts (may be NULL) receives what the arming saw. 0 or -1. */
int fault_ctl_disarm(fault_ctl *ctl, fault_counts *counts);

#endif
