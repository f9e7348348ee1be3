/* cli_jobs: `vaed jobs`, the client of a running server's training jobs.
 *
 *     vaed jobs submit [--url URL] [--token-file F] [--watch] FILE|-   (a JSON job spec)
 *     vaed jobs list   [--url URL] [--state S]
 *     vaed jobs show   [--url URL] ID
 *     vaed jobs cancel [--url URL] [--token-file F] ID
 *     vaed jobs watch  [--url URL] [--retry-s N] ID
 *
 * watch follows GET /jobs/ID/events from the job's first event: a progress
 * bar on stderr when it is a terminal, one line per epoch and one per state
 * change on stdout. When the stream breaks off (the server restarted), it
 * reconnects with Last-Event-ID for up to --retry-s seconds. Exit codes:
 * 0 ok (watch: the job succeeded), 1 failed (watch: failed or cancelled, or
 * the server could not be reached), 2 usage. main() passes argv with
 * argv[0] = "jobs".
 */
#ifndef CLI_JOBS_H
#define CLI_JOBS_H

int cli_jobs(int argc, char **argv);

#endif
