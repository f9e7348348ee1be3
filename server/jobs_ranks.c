/* jobs_ranks: a job's ranks under mpirun, their events read back. See
 * jobs_ranks.h. */
#include "server/jobs_ranks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/util.h"

extern char **environ;

void jobs_ranks_print_progress(const trainer_progress *p)
{
    printf("@progress %d %d %lld %lld %.17g %.17g %.17g\n", p->epoch, p->epochs,
           (long long)p->step, (long long)p->steps, p->images_per_s, p->eta_s, p->loss);
    fflush(stdout);
}

void jobs_ranks_print_epoch(const char *kind, const trainer_epoch_metrics *m)
{
    printf("@%s %d %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g\n", kind, m->epoch,
           m->train_loss, m->train_recon, m->train_kl, m->test_loss, m->test_recon, m->test_kl,
           m->images_per_s, m->seconds);
    fflush(stdout);
}

/* What the lines said so far. */
typedef struct {
    const jobs_ranks_options *o;
    trainer_epoch_metrics *history; /* owned; n of cap */
    int n, cap;
    int resumed_told;
    int nomem;
} events;

static int parse_metrics(const char *s, trainer_epoch_metrics *m)
{
    return sscanf(s, "%d %lf %lf %lf %lf %lf %lf %lf %lf", &m->epoch, &m->train_loss,
                  &m->train_recon, &m->train_kl, &m->test_loss, &m->test_recon, &m->test_kl,
                  &m->images_per_s, &m->seconds) == 9;
}

static void push_epoch(events *ev, const trainer_epoch_metrics *m)
{
    if (ev->n == ev->cap) {
        int cap = ev->cap ? 2 * ev->cap : 16;
        trainer_epoch_metrics *h = realloc(ev->history, sizeof *h * (size_t)cap);
        if (!h) {
            ev->nomem = 1;
            return;
        }
        ev->history = h;
        ev->cap = cap;
    }
    ev->history[ev->n++] = *m;
}

/* The restored epochs, once, before the first new event. */
static void tell_resumed(events *ev)
{
    if (ev->resumed_told || ev->n == 0) return;
    ev->resumed_told = 1;
    if (ev->o->on_resumed) ev->o->on_resumed(ev->o->ctx, ev->history, ev->n);
}

static void on_line(events *ev, const char *line)
{
    const jobs_ranks_options *o = ev->o;
    trainer_epoch_metrics m;
    if (strncmp(line, "@history ", 9) == 0 && parse_metrics(line + 9, &m)) {
        push_epoch(ev, &m);
    } else if (strncmp(line, "@epoch ", 7) == 0 && parse_metrics(line + 7, &m)) {
        tell_resumed(ev);
        ev->resumed_told = 1;
        push_epoch(ev, &m);
        if (o->on_epoch && !ev->nomem) o->on_epoch(o->ctx, ev->history, ev->n);
    } else if (strncmp(line, "@progress ", 10) == 0) {
        trainer_progress p;
        long long step, steps;
        if (sscanf(line + 10, "%d %d %lld %lld %lf %lf %lf", &p.epoch, &p.epochs, &step, &steps,
                   &p.images_per_s, &p.eta_s, &p.loss) != 7)
            return;
        p.step = step;
        p.steps = steps;
        tell_resumed(ev);
        ev->resumed_told = 1;
        if (o->on_progress) o->on_progress(o->ctx, &p);
    }
}

/* Why the ranks failed, into err: the last line of the log that starts with
 * "vaed train", else mpirun's first line of text (its messages come framed
 * by lines of dashes), since the log goes with the job's directory. */
static void last_error(const char *log_path, char *err, size_t errlen)
{
    FILE *f = fopen(log_path, "r");
    char line[1024], last[1024] = "", first[1024] = "";
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "vaed train", 10) == 0) snprintf(last, sizeof last, "%s", line);
        else if (!first[0] && line[0] && line[0] != '-') snprintf(first, sizeof first, "%s", line);
    }
    if (f) fclose(f);
    util_set_err(err, errlen, "the ranks failed: %s",
                 last[0] ? last : first[0] ? first : "mpirun said nothing");
}

jobs_ranks_status jobs_ranks_run(const jobs_ranks_options *o, trainer_epoch_metrics **history,
                                 int *n_done, char *err, size_t errlen)
{
    *history = NULL;
    *n_done = 0;
    char np[16];
    snprintf(np, sizeof np, "%d", o->ranks);
    const char *mpirun = o->mpirun ? o->mpirun : "mpirun";
    const char *argv[32];
    int a = 0;
    argv[a++] = mpirun;
    if (geteuid() == 0) argv[a++] = "--allow-run-as-root"; /* a daemon in a container */
    const char *rest[] = {"--hostfile", o->hostfile, "-np",    np,
                          o->vaed,      "train",     "--job-spec", o->spec_path,
                          "--data-root", o->data_root, "--events", "--resume",
                          o->resume_path, "--out",    o->out_path};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) argv[a++] = rest[i];
    argv[a] = NULL;

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        util_set_err(err, errlen, "cannot start mpirun: pipe: %s", strerror(errno));
        return JOBS_RANKS_ERR_START;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, o->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* none of the daemon's sockets */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGUSR1);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawnp(&pid, mpirun, &fa, &at, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        util_set_err(err, errlen, "cannot start %s: %s", mpirun, strerror(rc));
        return JOBS_RANKS_ERR_START;
    }

    events ev = {.o = o};
    char buf[8192];
    size_t used = 0;
    int stopped = 0;
    for (;;) {
        if (!stopped && o->cancel && *o->cancel) {
            kill(pid, SIGUSR1); /* mpirun passes it to every rank */
            stopped = 1;
        }
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t got = read(fds[0], buf + used, sizeof buf - 1 - used);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        used += (size_t)got;
        buf[used] = '\0';
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            on_line(&ev, line);
            line = nl + 1;
        }
        used -= (size_t)(line - buf);
        memmove(buf, line, used);
        if (used == sizeof buf - 1) used = 0; /* a line that long is not ours */
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    tell_resumed(&ev);
    *history = ev.history;
    *n_done = ev.n;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && access(o->out_path, F_OK) == 0)
        return JOBS_RANKS_OK;
    if (stopped) return JOBS_RANKS_CANCELLED;
    last_error(o->log_path, err, errlen);
    return ev.nomem ? JOBS_RANKS_ERR_NOMEM : JOBS_RANKS_ERR_FAILED;
}
