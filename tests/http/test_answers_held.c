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
#include <sys/stat.h>
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
    long long held_bytes = (long long)harness_metric(port, "vaed_answers_held_bytes");
    print_message("unread answers: %d held (%lld bytes), %d refused in %lld ms; RSS %ld kB "
                  "above the %ld kB before\n",
                  held, held_bytes, refused, (long long)(harness_now_ms() - t0), during - base,
                  base);
    assert_true(held >= 1);
    assert_true(refused >= N / 2);
    assert_true(held_bytes > 0 && held_bytes <= (32 << 20) + (16 << 20));
    assert_true(harness_metric(port, "vaed_limit_refusals_total{limit=\"answers_held\"}") >= refused);
    /* 24 answers of ~4.4 MB held would be ~100 MB; the budget keeps it
     * near 32 MB (the sanitizers' quarantine triples what is allowed). */
    assert_true(during - base < 64 * 1024L * harness_slowdown());
    assert_int_equal(harness_healthz_within(port, 2000 * harness_slowdown()), 200);

    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* The budget is given back as libmicrohttpd notices each close. */
    long long after = -1;
    for (int tries = 0; tries < 50 * harness_slowdown(); tries++) {
        if ((after = (long long)harness_metric(port, "vaed_answers_held_bytes")) == 0)
            break;
        harness_sleep_ms(100);
    }
    print_message("unread answers: %lld bytes held after the clients closed\n", after);
    assert_int_equal(after, 0);
    expect_big_answer(port);
    assert_int_equal((long long)harness_metric(port, "vaed_answers_held_bytes"), 0);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(dir);
}

/* The answers of /score, the data routes and the explore routes, which
 * learn their size only once built. */
static const char *const other_answers[] = {
    "/data/mnist/test?count=16&format=npy",
    "/score?model=digits&from=mnist:test:0",
    "/reconstruct?from=mnist:test:0-3&format=json",
    "/traverse?from=mnist:test:3&dims=0-1&steps=4&format=json",
};
#define N_OTHER (sizeof other_answers / sizeof other_answers[0])

/* While one unread inference answer holds more than the whole budget, the
 * other answers are refused as an inference would be (503 answers_held,
 * Retry-After, counted); once it is read they are served again. */
static void test_other_answers_held(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], sets[HARNESS_PATH_MAX + 16], mnist[HARNESS_PATH_MAX + 32],
        data[HARNESS_PATH_MAX + 16], err[256];
    harness_daemon d;
    const char *const args[] = {"--max-answers-mb", "1", "--max-per-ip", "0", NULL};
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(sets, sizeof sets, "%s/sets", dir);
    snprintf(mnist, sizeof mnist, "%s/mnist", sets);
    snprintf(data, sizeof data, "%s/data", dir);
    assert_int_equal(mkdir(sets, 0700), 0);
    assert_int_equal(harness_write_idx_set(mnist, 10, 64), 0);
    if (harness_put_model(data, "digits", NULL, 7, NULL, err, sizeof err))
        fail_msg("%s", err);
    setenv("VAED_DATA", sets, 1);
    int port = harness_daemon_start(&d, data, args);
    assert_true(port > 0);

    /* One answer is always taken when nothing is held: the 4.4 MB one. */
    int lazy = lazy_client(port);
    char buf[2048];
    if (!answer_start(lazy, buf, sizeof buf, 10000 * harness_slowdown()) ||
        strncmp(buf, "HTTP/1.1 200", 12))
        fail_msg("the first large answer: %.300s", buf);
    double held = harness_metric(port, "vaed_answers_held_bytes");
    assert_true(held > (1 << 20));
    double before = harness_metric(port, "vaed_limit_refusals_total{limit=\"answers_held\"}");
    for (size_t i = 0; i < N_OTHER; i++) {
        harness_response r;
        assert_int_equal(harness_request(port, "GET", other_answers[i], NULL, NULL, 0, &r), 0);
        print_message("GET %s with %.0f bytes held: %d\n", other_answers[i], held, r.status);
        if (!harness_expect_error(&r, 503, "answers_held") || !harness_header(&r, "Retry-After") ||
            !strstr((const char *)r.body, "--max-answers-mb 1"))
            fail_msg("GET %s past the budget: %d %.300s", other_answers[i], r.status,
                     (char *)r.body);
        harness_response_free(&r);
    }
    assert_true(harness_metric(port, "vaed_limit_refusals_total{limit=\"answers_held\"}") >=
                before + (double)N_OTHER);
    assert_int_equal(harness_healthz_within(port, 2000 * harness_slowdown()), 200);

    close(lazy);
    double after = -1;
    for (int tries = 0; tries < 50 * harness_slowdown(); tries++) {
        if ((after = harness_metric(port, "vaed_answers_held_bytes")) == 0)
            break;
        harness_sleep_ms(100);
    }
    assert_true(after == 0);
    for (size_t i = 0; i < N_OTHER; i++) {
        harness_response r;
        assert_int_equal(harness_request(port, "GET", other_answers[i], NULL, NULL, 0, &r), 0);
        if (r.status != 200)
            fail_msg("GET %s with nothing held: %d %.300s", other_answers[i], r.status,
                     (char *)r.body);
        harness_response_free(&r);
    }
    assert_true(harness_metric(port, "vaed_answers_held_bytes") == 0);
    assert_int_equal(harness_daemon_stop(&d), 0);
    unsetenv("VAED_DATA");
    harness_rm_rf(dir);
}

int main(void)
{
    harness_set_timeout_ms(20000 * harness_slowdown());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unread_answers),
        cmocka_unit_test(test_other_answers_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
