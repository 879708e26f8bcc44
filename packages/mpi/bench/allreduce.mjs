/* global console, performance, process */
// Times MpiTransport.allReduce (float32 and float16, sum) for the element counts given on the
// command line, as bench/allreduce.c does for MPI_Allreduce from C. Prints one JSON object.
//
//   npx tsup && npm run build:native          (in packages/mpi)
//   mpirun --allow-run-as-root --oversubscribe -np 4 node bench/allreduce.mjs 2048 8192 1048576 4194304
//   ... node bench/allreduce.mjs --no-check-agreement --float16-wire half 2048 ...
//
// Each timed call is preceded by a barrier; a call's time is the slowest rank's, and the median
// and minimum over the iterations are reported in microseconds.
import { MpiTransport } from '../dist/index.js';

const args = process.argv.slice(2);
let checkAgreement = true;
let float16Wire = 'convert';
const counts = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--no-check-agreement') checkAgreement = false;
  else if (args[i] === '--float16-wire') float16Wire = args[++i];
  else counts.push(Number(args[i]));
}

const transport = await MpiTransport.create({ checkAgreement, float16Wire });


async function timeCalls(values, precision, iterations) {
  for (let warmup = 0; warmup < 3; warmup++) await transport.allReduce(values, { precision });
  const micros = [];
  for (let i = 0; i < iterations; i++) {
    await transport.barrier();
    const start = performance.now();
    await transport.allReduce(values, { precision });
    const elapsed = (performance.now() - start) * 1000;
    const slots = new Float32Array(transport.worldSize);
    slots[transport.rank] = elapsed;
    const gathered = await transport.allReduce(slots);
    micros.push(Math.max(...gathered));
  }
  micros.sort((a, b) => a - b);
  return { medianUs: Number(micros[iterations >> 1].toFixed(1)), minUs: Number(micros[0].toFixed(1)) };
}

const results = [];
for (const elements of counts) {
  const values = new Float32Array(elements).fill(1);
  const iterations = elements >= 1 << 20 ? 10 : 100;
  results.push({
    elements,
    iterations,
    float32: await timeCalls(values, 'float32', iterations),
    float16: await timeCalls(values, 'float16', iterations),
  });
}
if (transport.rank === 0) {
  console.log(
    JSON.stringify({ implementation: 'node', ranks: transport.worldSize, checkAgreement, float16Wire, results }),
  );
}
await transport.close();
