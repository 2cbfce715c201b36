/* reason_pipeline_run inside an MPI program (run by ctest under mpirun -np 2): the program owns
 * MPI (MPI_Init / MPI_Finalize) and passes a communicator of its own, split from MPI_COMM_WORLD;
 * every rank runs the same config into the same directory, the GRPO stage's metrics say 2 ranks,
 * and the trainer C ABI with `data_parallel {}` takes part in the job too: each rank's SFT step on
 * half a batch gives the loss of the whole batch. Plain C, as a user's program would be.
 * Usage: mpi_pipeline CONFIG MODEL_DIR */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reason.h"

static int fail(int rank, const char* what) {
  fprintf(stderr, "FAIL (rank %d): %s: %s\n", rank, what, reason_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc != 3 || size != 2) {
    fprintf(stderr, "usage: mpirun -np 2 mpi_pipeline CONFIG MODEL_DIR\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Comm comm;
  MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &comm);

  /* One output directory for both ranks: rank 0 makes it. */
  char out[256] = "/tmp/reason_capi_mpi_XXXXXX";
  if (rank == 0 && !mkdtemp(out)) return fail(rank, "mkdtemp");
  MPI_Bcast(out, sizeof out, MPI_CHAR, 0, comm);

  reason_pipeline_options o = REASON_PIPELINE_OPTIONS_INIT;
  o.progress = 0;
  o.mpi_comm = &comm;
  char* summary = NULL;
  if (reason_pipeline_run(argv[1], out, &o, &summary) != REASON_OK) return fail(rank, "reason_pipeline_run");
  if (!summary || !strstr(summary, "\"stages\"")) return fail(rank, "no summary");
  reason_free(summary);
  char metrics[512];
  snprintf(metrics, sizeof metrics, "%s/stages/00-rl/metrics.jsonl", out);
  FILE* f = fopen(metrics, "r");
  if (!f) return fail(rank, "no metrics.jsonl");
  char line[8192];
  int rows = 0, ranks2 = 0;
  while (fgets(line, sizeof line, f)) {
    ++rows;
    ranks2 += strstr(line, "\"ranks\":2") != NULL;
  }
  fclose(f);
  if (rows != 2 || ranks2 != 2) return fail(rank, "the GRPO stage did not run on 2 ranks");

  /* The trainer C ABI in the same job: `data_parallel {}` joins MPI_COMM_WORLD. */
  reason_model* m = NULL;
  if (reason_model_load(&m, argv[2], NULL) != REASON_OK) return fail(rank, "reason_model_load");
  reason_trainer* t = NULL;
  const char* cfg = "optimizer { lr: 0 } data_parallel { }";
  if (reason_trainer_create(&t, m, NULL, cfg, 0, 0) != REASON_OK) return fail(rank, "reason_trainer_create");
  const int32_t tokens[2][6] = {{5, 6, 7, 8, 9, 10}, {11, 12, 13, 14, 15, 16}};
  const uint8_t mask[6] = {0, 0, 1, 1, 1, 1};
  const int32_t* seq = tokens[rank];
  const uint8_t* msk = mask;
  const size_t len = 6;
  reason_step_metrics met = REASON_STEP_METRICS_INIT;
  if (reason_trainer_sft_step(&met, t, &seq, &len, &msk, 1) != REASON_OK) return fail(rank, "reason_trainer_sft_step");
  /* Every rank's loss is the whole batch's mean over 8 tokens, and equal on both ranks. */
  float losses[2];
  MPI_Allgather(&met.loss, 1, MPI_FLOAT, losses, 1, MPI_FLOAT, comm);
  if (met.tokens != 8 || losses[0] != losses[1]) return fail(rank, "the SFT step was not over both ranks' examples");
  reason_trainer_free(t);
  reason_model_free(m);

  MPI_Barrier(comm);
  if (rank == 0) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    if (system(cmd) != 0) return fail(rank, "rm");
    printf("OK\n");
  }
  MPI_Comm_free(&comm);
  MPI_Finalize();
  return 0;
}
