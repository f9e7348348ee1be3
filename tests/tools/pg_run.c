/* pg_run: a command run beside a throwaway PostgreSQL server, for the shell
 * tests in tests/sh; the server is tests/lib/pg_server.h's, the one the
 * C tests start.
 *
 *     build/tests/pg_run [-n N] CMD [ARG...]
 *
 * Starts the server on a free loopback port, creates N (default 1, at most
 * 9) empty databases, runs CMD with VAED_TEST_PG_URL1..N
 * (postgresql://vaed@127.0.0.1:PORT/NAME, trust authentication: any password
 * in a URL is accepted) and VAED_TEST_PG_PORT in its environment, then
 * stops the server and removes its directory, whatever CMD did. SIGTERM,
 * SIGINT and SIGHUP are passed on to CMD, so a test's timeout still removes
 * the server. Exit: CMD's status (128 + signal when it was killed); 77,
 * "skipped", when PostgreSQL is not installed; 1 when it cannot start.
 */
#include "tests/lib/pg_server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t child_pid;

static void pass_on(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

int main(int argc, char **argv)
{
    int n_dbs = 1, first = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        n_dbs = atoi(argv[2]);
        first = 3;
    }
    if (first >= argc || n_dbs < 1 || n_dbs > 9) {
        fprintf(stderr, "usage: pg_run [-n N (1-9)] CMD [ARG...]\n");
        return 2;
    }
    if (!pg_server_available()) {
        fprintf(stderr, "pg_run: no PostgreSQL server binaries (make deps): skipped\n");
        return 77;
    }
    pg_server s;
    char err[512], url[256], name[32];
    if (pg_server_start(&s, err, sizeof err)) {
        fprintf(stderr, "pg_run: %s\n", err);
        return 1;
    }
    for (int i = 1; i <= n_dbs; i++) {
        snprintf(name, sizeof name, "VAED_TEST_PG_URL%d", i);
        if (pg_server_new_db(&s, url, sizeof url, err, sizeof err) || setenv(name, url, 1)) {
            fprintf(stderr, "pg_run: %s\n", err);
            pg_server_free(&s);
            return 1;
        }
    }
    char port[16];
    snprintf(port, sizeof port, "%d", s.port);
    setenv("VAED_TEST_PG_PORT", port, 1);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pass_on;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[first], argv + first);
        fprintf(stderr, "pg_run: %s: %s\n", argv[first], strerror(errno));
        _exit(127);
    }
    int status = 0, rc = 1;
    if (pid < 0) {
        fprintf(stderr, "pg_run: fork: %s\n", strerror(errno));
    } else {
        child_pid = pid;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    pg_server_free(&s);
    return rc;
}
