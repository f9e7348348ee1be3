/* dist_mpi: the trainer's collective calls (engine/trainer_dist.h) over MPI,
 * for `vaed train` started by mpirun; the one file of vaed that includes
 * <mpi.h>.
 *
 *     dist_mpi *mpi = NULL;                       // owned: dist_mpi_end frees it
 *     if (dist_mpi_launched() &&
 *         dist_mpi_start(timeout_s, &mpi, err, sizeof err)) ...
 *     trainer_dist d;
 *     dist_mpi_table(mpi, &d);                    // rank, size and the calls
 *     ... every rank trains (train_run with o.dist = &d) ...
 *     status = dist_mpi_end(mpi, status);         // MPI_Finalize, or MPI_Abort
 *
 * Without mpirun nothing here runs: MPI is initialised only when the
 * launcher's environment says this process is a rank, so `vaed` on its own
 * and `vaed serve` behave as if MPI were not linked.
 *
 * Every collective call waits at most timeout_s seconds for the other ranks
 * (polling a non-blocking operation), so a rank that hangs or a host that
 * stops answering ends the run with VAE_ERR_IO and a message instead of a
 * run that never ends; a rank that dies is noticed by mpirun, which ends the
 * others. After such a failure the communicator is unusable: dist_mpi_end
 * then calls MPI_Abort, which ends every rank of the run.
 */
#ifndef DIST_MPI_H
#define DIST_MPI_H

#include <stddef.h>

#include "engine/trainer_dist.h"
#include "engine/vae_status.h"

typedef struct dist_mpi dist_mpi;

/* 1 when mpirun (Open MPI) started this process as a rank of a run. */
int dist_mpi_launched(void);
/* MPI_Init; *out owned by the caller until dist_mpi_end. */
vae_status dist_mpi_start(double timeout_s, dist_mpi **out, char *err, size_t errlen);
/* The table the trainer calls, borrowing mpi (NULL: one process, size 1). */
void dist_mpi_table(dist_mpi *mpi, trainer_dist *d);
/* Ends MPI and frees mpi (NULL: nothing); returns status. Rank 0 of a run
 * that succeeded first prints the time its sums over the ranks took (the
 * gradients' allreduce of every step, the wait for a slower rank included).
 * After a failed collective call it aborts the whole run instead (every rank
 * exits). */
int dist_mpi_end(dist_mpi *mpi, int status);

#endif
