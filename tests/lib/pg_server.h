/* pg_server: a throwaway PostgreSQL server for tests, on 127.0.0.1.
 *
 *     pg_server s;
 *     if (pg_server_start(&s, err, sizeof err)) ...    // initdb + postgres, a few seconds
 *     char url[256];
 *     pg_server_create_db(&s, "t1", url, sizeof url, err, sizeof err);
 *     ... registry_open(url, ...) ...
 *     pg_server_stop(&s);      // fast shutdown
 *     pg_server_start_again(&s, err, sizeof err);      // same data, same port
 *     pg_server_free(&s);      // stops it and removes its directory
 *
 * The cluster lives in a mkdtemp() directory under /tmp; initdb and postgres
 * refuse to run as root, so when the test runs as root they run as the
 * "postgres" system user (Debian's postgresql package creates it), else as
 * the test's own user. Authentication is "trust" on loopback only (any
 * password is accepted, which lets a test put one in a URL and check it is
 * never shown); fsync is off: the data is thrown away.
 *
 * The binaries are $VAED_PG_BIN, else /usr/lib/postgresql/15/bin.
 * pg_server_available says whether they are there, so a test can skip.
 */
#ifndef PG_SERVER_H
#define PG_SERVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char dir[256];     /* the temporary directory (the cluster is DIR/data) */
    int port;
    pid_t pid;         /* the postmaster while running, else 0 */
    int next_db;
} pg_server;

int pg_server_available(void);
/* 0 on success; on failure err says why and nothing is left behind. */
int pg_server_start(pg_server *s, char *err, size_t errlen);
/* A new empty database named name (letters, digits, _); url receives
 * postgresql://vaed@127.0.0.1:PORT/NAME. */
int pg_server_create_db(pg_server *s, const char *name, char *url, size_t urllen, char *err,
                        size_t errlen);
/* A fresh database with a generated name, for one test. */
int pg_server_new_db(pg_server *s, char *url, size_t urllen, char *err, size_t errlen);
/* Fast shutdown (clients are disconnected); waits for the exit. */
void pg_server_stop(pg_server *s);
/* Starts the stopped cluster again on the same port. */
int pg_server_start_again(pg_server *s, char *err, size_t errlen);
void pg_server_free(pg_server *s);

#endif
