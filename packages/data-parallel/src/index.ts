/**
 * `@mkor/data-parallel` — synchronous data-parallel training for the `@mkor` optimizers over any
 * `@mkor/allreduce` transport (in-process, simulated, `worker_threads`, Open MPI via `@mkor/mpi`):
 * every step all-reduces (mean) the gradients and, for second-order optimizers, the captured
 * statistics (MKOR Algorithm 1, step 2: `a, g ← AllReduce_mean(a, g)`), in few bucketed messages.
 */
export { DataParallelTrainer } from './trainer';
export type { DataParallelOptimizer, DataParallelTrainerOptions, StatisticsSource } from './trainer';
