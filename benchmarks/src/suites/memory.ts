/**
 * Suite `memory`: the optimizer state each optimizer holds per model (bytes of its state tensors
 * after two steps, so the factors exist), with MKOR's factors rounded to fp16 on and off, against
 * the paper's Table 1 counts.
 */
import * as tf from '@tensorflow/tfjs-core';

import { formatNumber, markdownTable } from '../lib';
import type { SuiteContext } from './context';
import { convergenceTasks } from './convergence';
import type { FactoryOptions, OptimizerFactory } from './optimizers';
import type { Task } from './tasks';

const BYTES_PER_ELEMENT: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };

interface StateSize {
  readonly stateBytes: number;
  readonly tensors: number;
  /** Bytes of the Kronecker factors and their inverses (state named `…Factor` or `…Inverse`). */
  readonly squareBytes: number;
  /** Growth of `tf.memory().numBytes` over the two steps (the state plus anything else kept). */
  readonly heldBytes: number;
  readonly parameterBytes: number;
}

async function stateSize(task: Task, factory: OptimizerFactory, options: FactoryOptions): Promise<StateSize> {
  const instance = task.create(1, { covariance: factory.needsCovariance });
  const parameterBytes = instance.variables.reduce((n, v) => n + v.size * 4, 0);
  const optimizer = factory.create(instance.target, 1e-3, options);
  try {
    // Step 0 creates the state; the optimizer's own state after step 1 is what a run holds.
    optimizer.minimize(() => instance.loss(0), false, instance.variables);
    const before = tf.memory().numBytes;
    optimizer.minimize(() => instance.loss(1), false, instance.variables);
    const heldBytes = tf.memory().numBytes - before;
    // getWeights returns the state tensors themselves (not copies): read their sizes, dispose nothing.
    const weights = await optimizer.getWeights();
    let stateBytes = 0;
    let squareBytes = 0;
    for (const { name, tensor } of weights) {
      const bytes = tensor.size * (BYTES_PER_ELEMENT[tensor.dtype] ?? 4);
      stateBytes += bytes;
      // A dense factor (`…Inverse`, `…Factor`) or the parts of a low-rank one (`…Inverse/basis`, …).
      if (/(Factor|Inverse)(\/(scale|basis|weights))?$/.test(name)) squareBytes += bytes;
    }
    return { stateBytes, tensors: weights.length, squareBytes, heldBytes, parameterBytes };
  } finally {
    optimizer.dispose();
    instance.dispose();
  }
}

const mib = (bytes: number): string => formatNumber(bytes / 2 ** 20);

export async function runMemory(context: SuiteContext): Promise<void> {
  const tasks = convergenceTasks(context);
  const variants: { factory: OptimizerFactory; label: string; options: FactoryOptions }[] = context.optimizers
    .filter((f) => f.name !== 'MKOR-H')
    .flatMap((factory) =>
      factory.name === 'MKOR'
        ? [
            { factory, label: 'MKOR (fp32 factors)', options: { factorPrecision: 'float32' as const } },
            { factory, label: 'MKOR (factors rounded to fp16)', options: { factorPrecision: 'float16' as const } },
          ]
        : [{ factory, label: factory.name, options: {} }],
    );
  const bar = context.progress('memory', tasks.length * variants.length);
  const sections: string[] = [];
  for (const task of tasks) {
    await context.useBackend(task.backend);
    const rows: string[][] = [];
    for (const { factory, label, options } of variants) {
      try {
        const size = await stateSize(task, factory, options);
        const fp16Bytes = size.stateBytes - size.squareBytes / 2;
        rows.push([
          label,
          mib(size.parameterBytes),
          String(size.tensors),
          mib(size.stateBytes),
          `${formatNumber(size.stateBytes / size.parameterBytes)}×`,
          mib(size.squareBytes),
          factory.secondOrder ? mib(fp16Bytes) : '–',
          mib(size.heldBytes),
        ]);
      } catch (error) {
        rows.push([label, '–', '–', `failed: ${(error as Error).message.split('\n')[0]}`, '–', '–', '–', '–']);
      } finally {
        bar.tick(`${task.name} ${label}`);
      }
    }
    sections.push(`## ${task.name}\n\n${task.description}.\n\n${markdownTable(
      ['optimizer', 'parameters MiB', 'state tensors', 'state MiB (as held, float32)', 'state / parameters', 'of which factors MiB (dense d × d or low-rank)', 'state MiB with factors stored in 16 bits', 'tf.memory() growth over a step MiB'],
      rows,
    )}`);
  }
  bar.done();
  context.publish(
    'memory',
    'memory: optimizer state per model',
    `State bytes are counted from \`optimizer.getWeights()\` (every state tensor the optimizer
checkpoints: moments, factors, moving averages) after two steps on seed 1; "d × d factors" are
the Kronecker factors and inverse factors among them (state fields named \`…Factor\` or \`…Inverse\`). Paper Table 1 per layer: MKOR 2d² + 2d, KFAC 4d² (factors
and their inverses), Eva 2d (vectors only); every method adds its first-order backend's state
(Adam: 2 × parameters).

**fp16.** TensorFlow.js has no float16 dtype, so \`factorPrecision: 'float16'\` *rounds* MKOR's
inverse factors to half precision after each update but still stores them as float32: the bytes
held are the same with it on and off (the table shows this). The column "stored in 16 bits" is
what the state would take with the factors kept as 16-bit payloads (\`@mkor/fp16\` encodes them
for checkpoints and communication), i.e. the factors' bytes halved. "tf.memory() growth" is the
change of \`tf.memory().numBytes\` across one step after the state exists; it should be ≈ 0 (no
leak, state replaced in place).

${sections.join('\n\n')}
`,
  );
}
