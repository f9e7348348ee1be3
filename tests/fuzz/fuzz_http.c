/* fuzz_http: whole HTTP requests through the real daemon — libmicrohttpd,
 * the transport's life cycle (auth before the body, body caps, 404/405),
 * the route table, every handler, the registry, the caches and the compute
 * pools — running in this process (fuzz_env), so coverage and sanitizer
 * reports from all of them reach the fuzzer.
 *
 * Why a real daemon on a loopback port rather than the life-cycle
 * functions called directly: those are libmicrohttpd callbacks whose
 * contract (when the body arrives, suspend and resume from the compute
 * pool, the completion callback on a client gone) only libmicrohttpd
 * honours exactly, and http_server.c keeps them private; a request sent on
 * a socket is what a client does, at about a millisecond each.
 *
 * Input: the bytes a client sends, as they are (several pipelined requests
 * are fine). Every response must have a status line, and every error the
 * JSON error body; no 500 (nothing fails on purpose here); and the daemon
 * must answer and close within FUZZ_ENV_REPLY_S seconds. */
#include <stdint.h>
#include <string.h>

#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_env_reply r;
    fuzz_env_exchange(data, size, &r);
    fuzz_env_check_reply(&r, size >= 5 && !memcmp(data, "HEAD ", 5));
    fuzz_env_reply_free(&r);
    return 0;
}
