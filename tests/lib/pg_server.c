/* pg_server: a throwaway PostgreSQL for tests. See pg_server.h. */
#include "tests/lib/pg_server.h"

#include "tests/lib/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *bin_dir(void)
{
    const char *d = getenv("VAED_PG_BIN");
    return d && *d ? d : "/usr/lib/postgresql/15/bin";
}

int pg_server_available(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/postgres", bin_dir());
    if (access(path, X_OK) != 0)
        return 0;
    snprintf(path, sizeof path, "%s/initdb", bin_dir());
    return access(path, X_OK) == 0 && (geteuid() != 0 || getpwnam("postgres") != NULL);
}

/* In a child: becomes the unprivileged user when root (the parent already
 * gave the directory to that user), sends output to log. */
static void child_setup(const char *log)
{
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || setgroups(0, NULL) || setgid(pw->pw_gid) || setuid(pw->pw_uid))
            _exit(126);
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    setsid(); /* a Ctrl-C of the test does not reach the server first */
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void conninfo(const pg_server *s, const char *db, char *out, size_t len)
{
    snprintf(out, len, "host=127.0.0.1 port=%d user=vaed dbname=%s connect_timeout=5", s->port,
             db);
}

static int wait_ready(pg_server *s, char *err, size_t errlen)
{
    char ci[256];
    conninfo(s, "postgres", ci, sizeof ci);
    for (int i = 0; i < 600 * harness_slowdown(); i++) {
        if (PQping(ci) == PQPING_OK)
            return 0;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            snprintf(err, errlen, "postgres exited at start: see %s/postgres.log", s->dir);
            return -1;
        }
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    snprintf(err, errlen, "postgres did not answer within 30 s: see %s/postgres.log", s->dir);
    return -1;
}

static int spawn_postgres(pg_server *s, char *err, size_t errlen)
{
    char exe[512], data[300], log[300], port[16];
    snprintf(exe, sizeof exe, "%s/postgres", bin_dir());
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/postgres.log", s->dir);
    snprintf(port, sizeof port, "%d", s->port);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        child_setup(log);
        execl(exe, "postgres", "-D", data, "-p", port, "-k", s->dir, "-c",
              "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
              "-c", "max_connections=200", (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    return wait_ready(s, err, errlen);
}

int pg_server_start(pg_server *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!pg_server_available()) {
        snprintf(err, errlen, "no PostgreSQL binaries in %s (or no postgres user)", bin_dir());
        return -1;
    }
    if (harness_tmpdir(s->dir, sizeof s->dir)) {
        snprintf(err, errlen, "mkdtemp failed");
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(s->dir, pw->pw_uid, pw->pw_gid)) {
            snprintf(err, errlen, "chown %s to postgres: %s", s->dir, strerror(errno));
            goto fail;
        }
    }
    char exe[512], data[300], log[300];
    snprintf(exe, sizeof exe, "%s/initdb", bin_dir());
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/initdb.log", s->dir);
    pid_t pid = fork();
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        child_setup(log);
        execl(exe, "initdb", "-D", data, "-U", "vaed", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errlen, "initdb failed: see %s", log);
        goto fail;
    }
    if ((s->port = free_port()) < 0) {
        snprintf(err, errlen, "no free loopback port");
        goto fail;
    }
    if (spawn_postgres(s, err, errlen))
        goto fail;
    return 0;
fail:
    pg_server_free(s);
    return -1;
}

int pg_server_start_again(pg_server *s, char *err, size_t errlen)
{
    if (s->pid)
        return 0;
    return spawn_postgres(s, err, errlen);
}

int pg_server_create_db(pg_server *s, const char *name, char *url, size_t urllen, char *err,
                        size_t errlen)
{
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            snprintf(err, errlen, "bad database name %s", name);
            return -1;
        }
    char ci[256], sql[128];
    conninfo(s, "postgres", ci, sizeof ci);
    PGconn *c = PQconnectdb(ci);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *res = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, errlen, "CREATE DATABASE %s: %s", name, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    if (!ok)
        return -1;
    snprintf(url, urllen, "postgresql://vaed@127.0.0.1:%d/%s", s->port, name);
    return 0;
}

int pg_server_new_db(pg_server *s, char *url, size_t urllen, char *err, size_t errlen)
{
    char name[32];
    snprintf(name, sizeof name, "t%d", ++s->next_db);
    return pg_server_create_db(s, name, url, urllen, err, errlen);
}

void pg_server_stop(pg_server *s)
{
    if (!s->pid)
        return;
    kill(s->pid, SIGINT); /* fast shutdown: active clients are disconnected */
    int st;
    for (int i = 0; i < 400; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
}

void pg_server_free(pg_server *s)
{
    pg_server_stop(s);
    if (s->dir[0])
        harness_rm_rf(s->dir);
    s->dir[0] = '\0';
}
