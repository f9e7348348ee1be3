/* Black-box test of the budget of answers held for clients that do not read
 * them (--max-answers-mb): many connections each ask for a large JSON
 * answer and read none of it. Before the budget every answer stayed in the
 * daemon's memory until its client read or went (100 such clients: +439
 * MB of RSS); now the requests past the budget get 503 answers_held at
 * once, /healthz answers meanwhile, and the budget is whole again once the
 * clients close. Bounded in count and time, loopback only. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"

/* The request each hostile client sends: 1024 latents decoded, as JSON
 * (about 4.4 MB on the test model). */
static const char big_request[] = "POST /sample?n=1024&format=json&seed=3 HTTP/1.1\r\n"
                                  "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";

/* A client that reads almost nothing: a receive buffer of a few KiB, so
 * the kernel takes little of the answer off the daemon. */
static int lazy_client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int small = 4096;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(send(fd, big_request, sizeof big_request - 1, MSG_NOSIGNAL),
                     (ssize_t)sizeof big_request - 1);
    return fd;
}

/* The first bytes of fd's answer (its status line and headers) into buf,
 * waiting at most ms: the count read, 0 when nothing came. */
static size_t answer_start(int fd, char *buf, size_t buflen, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    ssize_t n = recv(fd, buf, buflen - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

/* The value of the /metrics line that starts with name and a space. */
static long long metrics_value(int port, const char *name)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    long long v = -1;
    size_t n = strlen(name);
    for (const char *at = (const char *)r.body; at && *at; at = strchr(at, '\n'), at = at ? at + 1 : at)
        if (!strncmp(at, name, n) && at[n] == ' ') {
            v = strtoll(at + n + 1, NULL, 10);
            break;
        }
    harness_response_free(&r);
    return v;
}

static void expect_big_answer(int port)
{
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/sample?n=1024&format=json&seed=3", NULL, NULL,
                                     0, &r),
                     0);
    if (r.status != 200)
        fail_msg("a large answer after the clients closed: %d %s", r.status, (char *)r.body);
    assert_true(r.body_len > 1000000);
    harness_response_free(&r);
}

static void test_unread_answers(void **state)
{
    (void)state;
    enum { N = 24 };
    char dir[HARNESS_PATH_MAX], err[256];
    harness_daemon d;
    const char *const args[] = {"--max-answers-mb", "32", "--max-per-ip", "0", NULL};
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    if (harness_put_model(dir, "digits", NULL, 7, NULL, err, sizeof err))
        fail_msg("%s", err);
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);
    expect_big_answer(port); /* warm: the model loaded, the allocator's arenas grown */
    long base = harness_daemon_status_kb(&d, "VmRSS");

    int fds[N], held = 0, refused = 0;
    for (int i = 0; i < N; i++)
        fds[i] = lazy_client(port);
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < N; i++) {
        char buf[2048];
        if (!answer_start(fds[i], buf, sizeof buf, 10000 * harness_slowdown()))
            fail_msg("client %d: no answer within 10 s", i);
        if (!strncmp(buf, "HTTP/1.1 200", 12)) {
            held++;
            continue;
        }
        if (strncmp(buf, "HTTP/1.1 503", 12) || !strstr(buf, "\"code\":\"answers_held\"") ||
            !strcasestr(buf, "\r\nRetry-After: 1\r\n") || !strstr(buf, "--max-answers-mb 32"))
            fail_msg("client %d: neither an answer nor answers_held: %.400s", i, buf);
        refused++;
    }
    long during = harness_daemon_status_kb(&d, "VmRSS");
    long long held_bytes = metrics_value(port, "vaed_answers_held_bytes");
    print_message("unread answers: %d held (%lld bytes), %d refused in %lld ms; RSS %ld kB "
                  "above the %ld kB before\n",
                  held, held_bytes, refused, (long long)(harness_now_ms() - t0), during - base,
                  base);
    assert_true(held >= 1);
    assert_true(refused >= N / 2);
    assert_true(held_bytes > 0 && held_bytes <= (32 << 20) + (16 << 20));
    assert_true(metrics_value(port, "vaed_limit_refusals_total{limit=\"answers_held\"}") >= refused);
    /* 24 answers of ~4.4 MB held would be ~100 MB; the budget keeps it
     * near 32 MB (the sanitizers' quarantine triples what is allowed). */
    assert_true(during - base < 64 * 1024L * harness_slowdown());
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);

    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* The budget is given back as libmicrohttpd notices each close. */
    long long after = -1;
    for (int tries = 0; tries < 50 * harness_slowdown(); tries++) {
        if ((after = metrics_value(port, "vaed_answers_held_bytes")) == 0)
            break;
        harness_sleep_ms(100);
    }
    print_message("unread answers: %lld bytes held after the clients closed\n", after);
    assert_int_equal(after, 0);
    expect_big_answer(port);
    assert_int_equal(metrics_value(port, "vaed_answers_held_bytes"), 0);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(dir);
}

int main(void)
{
    harness_set_timeout_ms(20000 * harness_slowdown());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unread_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
