/**
 * One layer's inverse factors read from an MKOR optimizer's public state — `getWeights()`, the
 * checkpoint it writes, whose entries for layer `<layer>` end in `layers/<layer>/block/inputInverse`
 * (`R⁻¹`, input side with the bias folded in) and `…/outputInverse` (`L⁻¹`, output side): a dense
 * matrix, or `…/scale`, `…/basis`, `…/weights` for a factor in low-rank form — and their spectra.
 */
import type { MkorOptimizer } from '@mkor/mkor';
import type * as tf from '@tensorflow/tfjs';

import { type FactorValues, inverseFactorSpectrum } from './spectrum';

/** The spectra of one layer's inverse factors at one step. */
export interface FactorSpectra {
  /** The layer's name in the capture (e.g. `dense_Dense2`). */
  readonly layer: string;
  /** Steps taken when they were read. */
  readonly step: number;
  /** Eigenvalues of `R⁻¹`, descending. */
  readonly input: number[];
  /** Eigenvalues of `L⁻¹`, descending. */
  readonly output: number[];
}

/** A state entry of a layer's factor: layer, side, and the low-rank part (absent for a dense factor). */
const FACTOR_ENTRY = /\/layers\/([^/]+)\/block\/(input|output)Inverse(?:\/(scale|basis|weights))?$/;

/**
 * The spectra of the inverse factors of the `layerIndex`-th second-order layer (0-based, in
 * capture order) of `optimizer`, read with `getWeights()` (asynchronous read-backs of that
 * layer's factors only; no tensor left: the entries are the optimizer's own or freed by its next
 * `getWeights`). Throws, naming
 * the layer, when the state holds no such factors (before the first step, or a layer index past
 * the last).
 */
export async function readFactorSpectra(optimizer: MkorOptimizer, layerIndex: number, step: number): Promise<FactorSpectra> {
  const entries = await optimizer.getWeights();
  const byLayer = new Map<string, Map<string, tf.Tensor>>();
  for (const { name, tensor } of entries) {
    const match = FACTOR_ENTRY.exec(name);
    if (match === null) continue;
    const [, layer, side, part] = match as unknown as [string, string, string, string | undefined];
    const parts = byLayer.get(layer) ?? new Map();
    parts.set(`${side}${part === undefined ? '' : `/${part}`}`, tensor);
    byLayer.set(layer, parts);
  }
  const layer = [...byLayer.keys()][layerIndex];
  const parts = layer === undefined ? undefined : byLayer.get(layer);
  if (layer === undefined || parts === undefined) {
    throw new RangeError(`readFactorSpectra: the state holds inverse factors of ${byLayer.size} layer(s), no layer ${layerIndex} (has the optimizer taken a step?)`);
  }
  const factor = async (side: 'input' | 'output'): Promise<number[]> => {
    const dense = parts.get(side);
    if (dense !== undefined) return Array.from(inverseFactorSpectrum({ kind: 'dense', size: dense.shape[0] as number, values: await dense.data() }));
    const [scale, basis, weights] = ['scale', 'basis', 'weights'].map((part) => parts.get(`${side}/${part}`));
    if (scale === undefined || basis === undefined || weights === undefined) throw new Error(`readFactorSpectra: layer ${layer} has no complete ${side} factor in the state`);
    const values: FactorValues = {
      kind: 'low-rank',
      size: basis.shape[0] as number,
      rank: basis.shape[1] as number,
      scale: (await scale.data())[0] as number,
      basis: await basis.data(),
      weights: await weights.data(),
    };
    return Array.from(inverseFactorSpectrum(values));
  };
  return { layer, step, input: await factor('input'), output: await factor('output') };
}
