import * as tf from '@tensorflow/tfjs-core';

import type { Layer, LayerKindHandler } from './layer-kind';
import type { RegistryState } from './registry';
import { type StatisticsVectors, captureThrough } from './statistics-store';

type CallFunction = Layer['call'];

/** tfjs-layers' `Layer.invokeCallHook`, which the layer's own `call` runs first. */
interface CallHook {
  invokeCallHook(inputs: tf.Tensor | tf.Tensor[], kwargs: Parameters<CallFunction>[1]): void;
}

/** Layers currently wrapped by some registry: a layer is prepared at most once at a time. */
const preparedLayers = new WeakSet<Layer>();

/** Whether `layer` is wrapped by a registry that has not been released. */
export function isPrepared(layer: Layer): boolean {
  return preparedLayers.has(layer);
}

function singleInput(where: string, layerName: string, inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  if (!Array.isArray(inputs)) return inputs;
  if (inputs.length !== 1) {
    throw new Error(`${where}: layer '${layerName}' expects exactly one input tensor, got ${inputs.length}`);
  }
  return inputs[0]!;
}

/** A layer to wrap: the layer, its registry name, its kind and the statistics it records. */
export interface LayerToPatch {
  readonly layer: Layer;
  readonly name: string;
  readonly handler: LayerKindHandler;
  readonly vectors: StatisticsVectors;
}

/**
 * The `call` that replaces a captured layer's own: under a gradient tape (and while the registry
 * is not released), the call hook, the kind's linear part through the capture point of
 * `captureThrough`, then the kind's activation; otherwise the original `call`.
 */
function capturingCall(where: string, target: LayerToPatch, originalCall: CallFunction, state: RegistryState): CallFunction {
  const { layer, name, handler, vectors } = target;
  return function call(this: Layer, inputs, kwargs) {
    // Without a gradient tape no backward pass can follow: the original call, untouched.
    if (!tf.engine().isTapeOn() || state.released) return originalCall.call(this, inputs, kwargs);
    return tf.tidy(() => {
      (layer as unknown as CallHook).invokeCallHook(inputs, kwargs);
      const input = singleInput(where, name, inputs);
      const preActivation = captureThrough(state.store, name, input, handler.linearPart(layer, input), vectors);
      return handler.activation === undefined ? preActivation : handler.activation(layer, preActivation);
    });
  };
}

/**
 * Replaces each layer instance's `call` by an own property computing it through the capture (its
 * class, config and serialisation are untouched); returns the function that restores every
 * layer's `call` as it was (deleting the own property, or restoring one that existed before).
 */
export function patchLayers(where: string, targets: readonly LayerToPatch[], state: RegistryState): () => void {
  const patched = targets.map((target) => {
    const { layer } = target;
    const ownCall = Object.getOwnPropertyDescriptor(layer, 'call');
    Object.defineProperty(layer, 'call', {
      value: capturingCall(where, target, layer.call, state),
      configurable: true,
      writable: true,
    });
    preparedLayers.add(layer);
    return { layer, ownCall };
  });
  return () => {
    for (const { layer, ownCall } of patched) {
      if (ownCall === undefined) delete (layer as { call?: CallFunction }).call;
      else Object.defineProperty(layer, 'call', ownCall);
      preparedLayers.delete(layer);
    }
  };
}
