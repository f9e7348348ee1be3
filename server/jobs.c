/* jobs: job states and event types. See jobs.h. */
#include "server/jobs.h"

#include <string.h>

static const char *const state_names[JOBS_STATE_COUNT] = {
    [JOBS_STATE_QUEUED] = "queued",       [JOBS_STATE_RUNNING] = "running",
    [JOBS_STATE_SUCCEEDED] = "succeeded", [JOBS_STATE_FAILED] = "failed",
    [JOBS_STATE_CANCELLED] = "cancelled",
};

static const char *const event_type_names[JOBS_EVENT_TYPE_COUNT] = {
    [JOBS_EVENT_STATE] = "state",
    [JOBS_EVENT_EPOCH] = "epoch",
    [JOBS_EVENT_PROGRESS] = "progress",
};

/* The index of name in names[0..n), or -1. */
static int name_index(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *jobs_state_name(jobs_state s)
{
    return (unsigned)s < JOBS_STATE_COUNT ? state_names[s] : NULL;
}

int jobs_state_parse(const char *name, jobs_state *out)
{
    int i = name_index(state_names, JOBS_STATE_COUNT, name);
    if (i < 0)
        return -1;
    *out = (jobs_state)i;
    return 0;
}

int jobs_state_is_final(jobs_state s)
{
    return s == JOBS_STATE_SUCCEEDED || s == JOBS_STATE_FAILED || s == JOBS_STATE_CANCELLED;
}

int jobs_state_can_become(jobs_state from, jobs_state to)
{
    switch (from) {
    case JOBS_STATE_QUEUED:
        return to == JOBS_STATE_RUNNING || to == JOBS_STATE_CANCELLED;
    case JOBS_STATE_RUNNING:
        return to == JOBS_STATE_SUCCEEDED || to == JOBS_STATE_FAILED ||
               to == JOBS_STATE_CANCELLED || to == JOBS_STATE_QUEUED;
    default:
        return 0;
    }
}

const char *jobs_event_type_name(jobs_event_type t)
{
    return (unsigned)t < JOBS_EVENT_TYPE_COUNT ? event_type_names[t] : NULL;
}

int jobs_event_type_parse(const char *name, jobs_event_type *out)
{
    int i = name_index(event_type_names, JOBS_EVENT_TYPE_COUNT, name);
    if (i < 0)
        return -1;
    *out = (jobs_event_type)i;
    return 0;
}
