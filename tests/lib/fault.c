#include "tests/lib/fault.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *fault_kind_name(fault_kind k)
{
    static const char *const names[FAULT_KIND_COUNT] = {"off", "alloc", "write", "fsync",
                                                         "rename"};
    return k >= 0 && k < FAULT_KIND_COUNT ? names[k] : "?";
}

void fault_ctl_init(fault_ctl *ctl, const char *path, pid_t pid)
{
    snprintf(ctl->path, sizeof ctl->path, "%s", path);
    ctl->pid = pid;
    ctl->seq = 0;
}

/* Writes the line, signals the daemon and waits for its answer to seq. */
static int send_line(fault_ctl *ctl, int kind, int64_t n, fault_counts *counts)
{
    char tmp[600], ack[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", ctl->path);
    snprintf(ack, sizeof ack, "%s.ack", ctl->path);
    int seq = ++ctl->seq;
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d %d %" PRId64 "\n", seq, kind, n) < 0 || fclose(f) ||
        rename(tmp, ctl->path)) {
        fprintf(stderr, "fault: cannot write %s: %s\n", ctl->path, strerror(errno));
        return -1;
    }
    if (kill(ctl->pid, SIGUSR1)) {
        fprintf(stderr, "fault: kill %d: %s\n", (int)ctl->pid, strerror(errno));
        return -1;
    }
    for (int tries = 0; tries < 5000; tries++) {
        f = fopen(ack, "r");
        if (f) {
            int got = -1;
            int64_t fired = 0, calls = 0;
            int fields = fscanf(f, "%d %" SCNd64 " %" SCNd64, &got, &fired, &calls);
            fclose(f);
            if (fields == 3 && got == seq) {
                if (counts) {
                    counts->fired = fired;
                    counts->calls = calls;
                }
                return 0;
            }
        }
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "fault: the daemon (pid %d) did not answer control line %d\n", (int)ctl->pid,
            seq);
    return -1;
}

int fault_ctl_arm(fault_ctl *ctl, fault_kind kind, int64_t n)
{
    return send_line(ctl, kind, n, NULL);
}

int fault_ctl_disarm(fault_ctl *ctl, fault_counts *counts)
{
    return send_line(ctl, FAULT_NONE, 0, counts);
}
