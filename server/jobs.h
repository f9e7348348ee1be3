/* jobs: the words every part of the training-jobs feature shares: a job's
 * state and the types of its events, as enums. Text appears only where the
 * words leave the program: the registry's columns, the HTTP bodies and the
 * event stream's "event:" lines.
 *
 *     jobs_state s;
 *     if (jobs_state_parse("running", &s)) ...          // -1: not a state
 *     printf("%s\n", jobs_state_name(s));               // "running"
 *     if (jobs_state_is_final(s)) ...                   // succeeded, failed, cancelled
 *     printf("%s\n", jobs_event_type_name(JOBS_EVENT_EPOCH));   // "epoch"
 *
 * A job runs queued -> running -> succeeded | failed | cancelled, or
 * queued -> cancelled, or running -> queued (interrupted: it resumes later).
 * The names returned are string literals.
 */
#ifndef JOBS_H
#define JOBS_H

typedef enum {
    JOBS_STATE_QUEUED = 0,
    JOBS_STATE_RUNNING,
    JOBS_STATE_SUCCEEDED,
    JOBS_STATE_FAILED,
    JOBS_STATE_CANCELLED
} jobs_state;
#define JOBS_STATE_COUNT 5

typedef enum {
    JOBS_EVENT_STATE = 0, /* a transition: {"state": S, ...} */
    JOBS_EVENT_EPOCH,     /* an epoch's metrics */
    JOBS_EVENT_PROGRESS   /* where the running epoch stands */
} jobs_event_type;
#define JOBS_EVENT_TYPE_COUNT 3

/* "queued", "running", "succeeded", "failed", "cancelled"; NULL for a value
 * that is not a state. */
const char *jobs_state_name(jobs_state s);
/* 0 with *out, or -1 when name (may be NULL) is not a state's name. */
int jobs_state_parse(const char *name, jobs_state *out);
/* 1 for succeeded, failed and cancelled. */
int jobs_state_is_final(jobs_state s);
/* 1 when a job in state from may become to. */
int jobs_state_can_become(jobs_state from, jobs_state to);

/* "state", "epoch", "progress"; NULL for a value that is not a type. */
const char *jobs_event_type_name(jobs_event_type t);
int jobs_event_type_parse(const char *name, jobs_event_type *out);

#endif
