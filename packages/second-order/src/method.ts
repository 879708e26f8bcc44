import type { Transform } from '@mkor/core';
import type * as tf from '@tensorflow/tfjs-core';

import type { CurvatureBlock } from './block';
import { type CompositionOptions, type SecondOrderTransform, secondOrder } from './compose';
import type { LayerSource } from './layers';
import type { SecondOrderMethodFactory } from './optimizer';
import { OPTIMIZER_OWN_OPTION_KEYS, type SecondOrderOptions, splitMethodOptions } from './options';
import { type BlockPreconditionerState, blockPreconditioner } from './preconditioner';
import type { UpdateScaling } from './scaling';

/** What defines a second-order method built from one block: its name, its block and its defaults. */
export interface MethodDefinition<B extends object> {
  /** The method's name: errors of its transform name it (`'kfac'`), of its preconditioner `'<name>Preconditioner'`; its state prefix. */
  readonly name: string;
  /** The keys of the block's options (the rest are the layer loop's). */
  readonly blockKeys: readonly (keyof B & string)[];
  /** The block, from its options, naming `where` in errors. */
  readonly block: (options: B, where: string) => CurvatureBlock;
  /** The update scaling when none is given. */
  readonly defaultScaling: UpdateScaling;
  /** Loop options the block's options imply unless given (e.g. MKOR's reference preset's scaling). */
  readonly loopDefaults?: (options: B, where: string) => Omit<SecondOrderOptions, 'learningRate'>;
  /** Clamp of the captured rows the block's options imply (`prepareModel`'s `rowClamp`). */
  readonly rowClamp?: (options: B) => number | undefined;
  /** The block's resolved hyperparameters for the optimizer's `getConfig`. */
  readonly config: (options: B, where: string) => tf.serialization.ConfigDict;
}

/** A method's options as its preconditioner and transform take them: the block's and the loop's. */
export type MethodOptions<B extends object> = B & SecondOrderOptions;

/** Options of a method's transform: its options, plus the layers, the backend and the hybrid switch. */
export type MethodTransformOptions<B extends object> = MethodOptions<B> & CompositionOptions & { readonly layers: LayerSource };

/** The three ways to use a method that {@link defineMethod} makes. */
export interface Method<B extends object> {
  /** The preconditioner alone: the block in the layer loop (`blockPreconditioner`). */
  readonly preconditioner: (layers: LayerSource, options?: MethodOptions<B>) => Transform<BlockPreconditionerState>;
  /** The preconditioner composed with its backend (and the hybrid switch): `secondOrder`. */
  readonly transform: (options: MethodTransformOptions<B>) => SecondOrderTransform;
  /** What `SecondOrderOptimizer` makes of the method's options (for the method's optimizer class). */
  readonly optimizer: SecondOrderMethodFactory;
}

/** The options a method's transform takes for itself before its block and loop see the rest. */
const TRANSFORM_OWN_OPTION_KEYS: readonly string[] = ['layers', 'backend', 'hybrid'];

/**
 * A second-order method from its block: the preconditioner, the transform and the optimizer's
 * method, each splitting the options into the block's and the loop's (unknown ones refused) and
 * naming the method in errors. MKOR, KFAC and Eva are defined with it; so can a method of yours.
 */
export function defineMethod<B extends object>(definition: MethodDefinition<B>): Method<B> {
  const { name, blockKeys, block, defaultScaling } = definition;
  const split = (where: string, options: object, takenKeys: readonly string[]): { block: B; loop: SecondOrderOptions } => {
    const parts = splitMethodOptions(where, options, blockKeys, takenKeys);
    const blockOptions = parts.block as B;
    return { block: blockOptions, loop: { ...definition.loopDefaults?.(blockOptions, where), ...parts.loop } };
  };
  return {
    preconditioner: (layers, options = {} as MethodOptions<B>) => {
      const where = `${name}Preconditioner`;
      const parts = split(where, options, []);
      return blockPreconditioner(layers, { ...parts.loop, blocks: block(parts.block, where) }, where, defaultScaling);
    },
    transform: (options) => {
      const where = name;
      if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options must be an object, got ${String(options)}`);
      const { layers, backend, hybrid, ...methodOptions } = options;
      const parts = split(where, methodOptions, TRANSFORM_OWN_OPTION_KEYS);
      return secondOrder({ layers, backend, ...(hybrid === undefined ? {} : { hybrid }), ...parts.loop, blocks: block(parts.block, where) }, where, defaultScaling);
    },
    optimizer: (where, methodOptions) => {
      const parts = split(where, methodOptions, OPTIMIZER_OWN_OPTION_KEYS);
      const rowClamp = definition.rowClamp?.(parts.block);
      return {
        statePrefix: name,
        blocks: block(parts.block, where),
        defaultScaling,
        loopDefaults: definition.loopDefaults?.(parts.block, where) ?? {},
        ...(rowClamp === undefined ? {} : { rowClamp }),
        config: definition.config(parts.block, where),
      };
    },
  };
}
