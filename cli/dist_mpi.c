/* dist_mpi: the trainer's collectives over MPI. See dist_mpi.h. */
#include "cli/dist_mpi.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#include "engine/util.h"

struct dist_mpi {
    int rank, size;
    double timeout_s;
    int broken; /* a collective failed: the communicator cannot be trusted */
    double t_start;              /* util_mono_s() after MPI_Init */
    long sums;                   /* allreduce calls, and the seconds spent in them */
    double sum_s;
};

int dist_mpi_launched(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    return n && *n;
}

vae_status dist_mpi_start(double timeout_s, dist_mpi **out, char *err, size_t errlen)
{
    *out = NULL;
    dist_mpi *m = calloc(1, sizeof *m); /* owned by the caller via *out */
    if (!m) {
        util_set_err(err, errlen, "out of memory");
        return VAE_ERR_NOMEM;
    }
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        free(m);
        util_set_err(err, errlen, "MPI_Init failed");
        return VAE_ERR_IO;
    }
    /* errors come back as codes, so a failure is reported, not a core dump */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &m->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &m->size);
    /* Linux lets a nap of this thread end up to its timer slack (50 us by
     * default) late: wait_for's 50 us naps would last about 100 us, each
     * a rank's delay in seeing that its peer has arrived. 1 us of slack. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
    m->timeout_s = timeout_s;
    m->t_start = util_mono_s();
    *out = m;
    return VAE_OK;
}

/* Waits for req, at most the timeout: MPI_Test in a loop (MPI progresses
 * only inside its calls), spinning for half a millisecond, then with naps
 * of 50 us, and of 1 ms after 50 ms. Spinning longer was measured slower on
 * a loaded 2-core machine: the waiting rank took the cycles its peer needed
 * to arrive (1,226-1,272 images/s with 50 ms of spinning against 1,465-1,522
 * with 0.5 ms, MLP on 2 ranks at a load average of 14). */
static vae_status wait_for(dist_mpi *m, MPI_Request *req, const char *what, char *err,
                           size_t errlen)
{
    double t0 = util_mono_s();
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            m->broken = 1;
            util_set_err(err, errlen, "rank %d: %s failed: %s", m->rank, what, msg);
            return VAE_ERR_IO;
        }
        if (done) return VAE_OK;
        double waited = util_mono_s() - t0;
        if (waited > m->timeout_s) {
            m->broken = 1;
            util_set_err(err, errlen,
                         "rank %d: no answer from the other ranks for %.0f s during %s: a rank "
                         "hung or a host stopped answering; ending the run",
                         m->rank, waited, what);
            return VAE_ERR_IO;
        }
        if (waited > 0.0005) {
            struct timespec nap = {0, waited > 0.05 ? 1000000 : 50000};
            nanosleep(&nap, NULL);
        }
    }
}

/* A broadcast of bytes from rank 0 (sum 0) or a sum of floats (sum 1) of
 * n elements, in pieces (MPI counts are ints), each waited for. */
static vae_status collective(dist_mpi *m, int sum, void *buf, size_t n, char *err, size_t errlen)
{
    size_t elem = sum ? sizeof(float) : 1, piece = (1u << 30) / elem;
    for (size_t at = 0; at < n;) {
        int k = (int)(n - at > piece ? piece : n - at);
        void *p = (char *)buf + at * elem;
        MPI_Request req;
        int rc = sum ? MPI_Iallreduce(MPI_IN_PLACE, p, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req)
                     : MPI_Ibcast(p, k, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) {
            m->broken = 1;
            util_set_err(err, errlen, "rank %d: %s failed", m->rank,
                         sum ? "MPI_Iallreduce" : "MPI_Ibcast");
            return VAE_ERR_IO;
        }
        vae_status st =
            wait_for(m, &req, sum ? "the sum of the gradients" : "a broadcast from rank 0", err,
                     errlen);
        if (st) return st;
        at += (size_t)k;
    }
    return VAE_OK;
}

static vae_status mpi_broadcast(void *ctx, void *buf, size_t bytes, char *err, size_t errlen)
{
    return collective(ctx, 0, buf, bytes, err, errlen);
}

static vae_status mpi_allreduce_sum(void *ctx, float *buf, size_t n, char *err, size_t errlen)
{
    dist_mpi *m = ctx;
    double t0 = util_mono_s();
    vae_status rc = collective(m, 1, buf, n, err, errlen);
    m->sum_s += util_mono_s() - t0;
    m->sums++;
    return rc;
}

void dist_mpi_table(dist_mpi *mpi, trainer_dist *d)
{
    *d = (trainer_dist){.rank = mpi ? mpi->rank : 0,
                        .size = mpi ? mpi->size : 1,
                        .ctx = mpi,
                        .broadcast = mpi_broadcast,
                        .allreduce_sum = mpi_allreduce_sum};
}

int dist_mpi_end(dist_mpi *mpi, int status)
{
    if (!mpi) return status;
    if (mpi->broken) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status ? status : 1); /* ends every rank; does not return */
    }
    if (mpi->rank == 0 && status == 0 && mpi->sums > 0) {
        /* the wait includes a slower rank's lag: what data parallelism costs here */
        double wall = util_mono_s() - mpi->t_start;
        printf("ranks: %d; %ld sums over the ranks, %.3f ms each, %.2f s in all (%.1f%% of "
               "%.2f s)\n",
               mpi->size, mpi->sums, 1e3 * mpi->sum_s / mpi->sums, mpi->sum_s,
               100.0 * mpi->sum_s / wall, wall);
        fflush(stdout);
    }
    MPI_Finalize();
    free(mpi);
    return status;
}
