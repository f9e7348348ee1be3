/* Unit tests for server/jobs.c: job states and event types by name, and the
 * transitions a job may make. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "server/jobs.h"

static void test_state_names_round_trip(void **state)
{
    (void)state;
    const char *names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    for (int i = 0; i < JOBS_STATE_COUNT; i++) {
        assert_string_equal(jobs_state_name((jobs_state)i), names[i]);
        jobs_state s = JOBS_STATE_COUNT;
        assert_int_equal(jobs_state_parse(names[i], &s), 0);
        assert_int_equal(s, i);
    }
    jobs_state s = JOBS_STATE_RUNNING;
    assert_int_equal(jobs_state_parse("asleep", &s), -1);
    assert_int_equal(jobs_state_parse("Queued", &s), -1);
    assert_int_equal(jobs_state_parse("", &s), -1);
    assert_int_equal(jobs_state_parse(NULL, &s), -1);
    assert_int_equal(s, JOBS_STATE_RUNNING); /* untouched */
    assert_null(jobs_state_name((jobs_state)JOBS_STATE_COUNT));
    assert_null(jobs_state_name((jobs_state)-1));
}

static void test_event_type_names_round_trip(void **state)
{
    (void)state;
    const char *names[] = {"state", "epoch", "progress"};
    for (int i = 0; i < JOBS_EVENT_TYPE_COUNT; i++) {
        assert_string_equal(jobs_event_type_name((jobs_event_type)i), names[i]);
        jobs_event_type t = JOBS_EVENT_TYPE_COUNT;
        assert_int_equal(jobs_event_type_parse(names[i], &t), 0);
        assert_int_equal(t, i);
    }
    jobs_event_type t;
    assert_int_equal(jobs_event_type_parse("log", &t), -1);
    assert_null(jobs_event_type_name((jobs_event_type)JOBS_EVENT_TYPE_COUNT));
}

static void test_final_states_and_transitions(void **state)
{
    (void)state;
    /* from \ to: queued running succeeded failed cancelled */
    static const int allowed[JOBS_STATE_COUNT][JOBS_STATE_COUNT] = {
        [JOBS_STATE_QUEUED] = {0, 1, 0, 0, 1},
        [JOBS_STATE_RUNNING] = {1, 0, 1, 1, 1},
    };
    for (int from = 0; from < JOBS_STATE_COUNT; from++) {
        int final = from == JOBS_STATE_SUCCEEDED || from == JOBS_STATE_FAILED ||
                    from == JOBS_STATE_CANCELLED;
        assert_int_equal(jobs_state_is_final((jobs_state)from), final);
        for (int to = 0; to < JOBS_STATE_COUNT; to++)
            assert_int_equal(jobs_state_can_become((jobs_state)from, (jobs_state)to),
                             allowed[from][to]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names_round_trip),
        cmocka_unit_test(test_event_type_names_round_trip),
        cmocka_unit_test(test_final_states_and_transitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
