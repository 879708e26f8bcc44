import * as tf from '@tensorflow/tfjs-core';

/**
 * One leaf of a flattened transform state: a tensor, or a number/boolean stored as a float32
 * scalar, under a path name such as `1/inner/layers/dense_1/inputInverse`.
 */
export interface NamedStateTensor {
  readonly name: string;
  readonly tensor: tf.Tensor;
}

/** Options of {@link flattenState} and {@link restoreState}. */
export interface StateIoOptions {
  /**
   * Paths to leave out of a checkpoint (e.g. per-step metrics holding strings); on restore they
   * keep the template's value (tensors cloned).
   */
  readonly exclude?: (path: string) => boolean;
}

function join(prefix: string, key: string | number): string {
  return prefix === '' ? String(key) : `${prefix}/${key}`;
}

/**
 * Flattens a state tree (plain objects, arrays, tensors, numbers, booleans; `null` and
 * `undefined` leaves are skipped) into named tensors for checkpoints, e.g. tfjs's
 * `Optimizer.getWeights`. Tensors are returned as they are (not copied); numbers and booleans
 * become new float32 scalars the caller owns. Strings are refused: they cannot be stored as tensors.
 */
export function flattenState(tree: unknown, prefix = '', options: StateIoOptions = {}): NamedStateTensor[] {
  const out: NamedStateTensor[] = [];
  const visit = (node: unknown, path: string): void => {
    if (node === null || node === undefined || options.exclude?.(path)) return;
    if (node instanceof tf.Tensor) out.push({ name: path, tensor: node });
    else if (typeof node === 'number') out.push({ name: path, tensor: tf.scalar(node, 'float32') });
    else if (typeof node === 'boolean') out.push({ name: path, tensor: tf.scalar(node ? 1 : 0, 'float32') });
    else if (Array.isArray(node)) node.forEach((child, i) => visit(child, join(path, i)));
    else if (typeof node === 'object') {
      for (const [key, child] of Object.entries(node)) visit(child, join(path, key));
    } else {
      throw new TypeError(`flattenState: cannot store a ${typeof node} at '${path}'`);
    }
  };
  visit(tree, prefix);
  return out;
}

/**
 * Rebuilds a state from named tensors, using `template` (a freshly initialised state of the same
 * transform) for the structure: every leaf of the template must be present under its path with the
 * same shape, or a clear error names the first one missing or mismatched. Tensors are cloned (the
 * result owns them); number and boolean leaves are read back. The template itself is not disposed.
 */
export function restoreState<S>(
  template: S,
  weights: readonly NamedStateTensor[],
  prefix = '',
  options: StateIoOptions = {},
): S {
  const byName = new Map(weights.map((w) => [w.name, w.tensor]));
  const take = (path: string): tf.Tensor => {
    const t = byName.get(path);
    if (t === undefined) throw new RangeError(`restoreState: the checkpoint has no entry '${path}'`);
    return t;
  };
  const visit = (node: unknown, path: string): unknown => {
    if (node === null || node === undefined) return node;
    if (options.exclude?.(path)) return node instanceof tf.Tensor ? tf.clone(node) : node;
    if (node instanceof tf.Tensor) {
      const saved = take(path);
      if (saved.shape.join(',') !== node.shape.join(',')) {
        throw new RangeError(
          `restoreState: '${path}' has shape [${saved.shape.join(', ')}] in the checkpoint, expected [${node.shape.join(', ')}]`,
        );
      }
      return tf.clone(saved);
    }
    if (typeof node === 'number') return take(path).dataSync()[0];
    if (typeof node === 'boolean') return take(path).dataSync()[0] !== 0;
    if (Array.isArray(node)) return node.map((child, i) => visit(child, join(path, i)));
    if (typeof node === 'object') {
      return Object.fromEntries(Object.entries(node).map(([k, child]) => [k, visit(child, join(path, k))]));
    }
    throw new TypeError(`restoreState: cannot restore a ${typeof node} at '${path}'`);
  };
  return visit(template, prefix) as S;
}
