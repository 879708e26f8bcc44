/*
 * The "same collective called from C" reference for bench/allreduce.mjs: times MPI_Allreduce
 * (blocking) and MPI_Iallreduce polled with MPI_Test (what the @mkor/mpi thread does) on float32
 * buffers, MPI_SUM, for the element counts given on the command line. Prints one JSON object.
 *
 *   mpicc -O2 -o bench/allreduce-c bench/allreduce.c
 *   mpirun --allow-run-as-root --oversubscribe -np 4 bench/allreduce-c 2048 8192 1048576 4194304
 *
 * Each timed call is preceded by MPI_Barrier; a call's time is the slowest rank's (MPI_MAX), and the
 * median and minimum over the iterations are reported in microseconds.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a;
  const double y = *(const double *)b;
  return (x > y) - (x < y);
}

static int iterations_for(long elements) { return elements >= (1L << 20) ? 10 : 100; }

/* Times `iterations` calls; mode 0 = MPI_Allreduce, 1 = MPI_Iallreduce + MPI_Test loop. */
static void time_calls(float *values, int elements, int iterations, int mode, double *median_us, double *min_us) {
  double *seconds = (double *)malloc(sizeof(double) * (size_t)iterations);
  for (int warmup = 0; warmup < 3; warmup++) MPI_Allreduce(MPI_IN_PLACE, values, elements, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < iterations; i++) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    if (mode == 0) {
      MPI_Allreduce(MPI_IN_PLACE, values, elements, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    } else {
      MPI_Request request;
      int done = 0;
      MPI_Iallreduce(MPI_IN_PLACE, values, elements, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
      while (!done) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    }
    double elapsed = MPI_Wtime() - start;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    seconds[i] = elapsed;
  }
  qsort(seconds, (size_t)iterations, sizeof(double), compare_doubles);
  *median_us = seconds[iterations / 2] * 1e6;
  *min_us = seconds[0] * 1e6;
  free(seconds);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank == 0) printf("{\"implementation\":\"c\",\"ranks\":%d,\"results\":[", size);
  for (int a = 1; a < argc; a++) {
    const long elements = atol(argv[a]);
    float *values = (float *)calloc((size_t)(elements > 0 ? elements : 1), sizeof(float));
    const int iterations = iterations_for(elements);
    double blocking_median = 0, blocking_min = 0, polled_median = 0, polled_min = 0;
    time_calls(values, (int)elements, iterations, 0, &blocking_median, &blocking_min);
    time_calls(values, (int)elements, iterations, 1, &polled_median, &polled_min);
    if (rank == 0) {
      printf("%s{\"elements\":%ld,\"iterations\":%d,\"allreduce\":{\"medianUs\":%.1f,\"minUs\":%.1f},"
             "\"iallreduceTest\":{\"medianUs\":%.1f,\"minUs\":%.1f}}",
             a > 1 ? "," : "", elements, iterations, blocking_median, blocking_min, polled_median, polled_min);
    }
    free(values);
  }
  if (rank == 0) printf("]}\n");
  MPI_Finalize();
  return 0;
}
