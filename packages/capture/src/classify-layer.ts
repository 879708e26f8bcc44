import type { Layer, LayerKindHandler, LinearLayerDescription } from './layer-kind';
import type { WalkedLayer } from './model-walk';
import { widthReason } from './registry';

/** Why layers of classes no kind covers, but known to have trainable variables, stay first-order. */
const FIRST_ORDER_CLASSES = new Map<string, string>([
  ['Embedding', 'embedding: a table lookup by index, no input vector to precondition with'],
  ['LayerNormalization', 'normalisation: an elementwise scale and shift, no matrix to precondition'],
  ['BatchNormalization', 'normalisation: an elementwise scale and shift, no matrix to precondition'],
]);

/** The rules a layer is classified by (see {@link classifyLayer}). */
export interface ClassificationRules {
  /** The table of layer kinds. */
  readonly kinds: readonly LayerKindHandler[];
  /** The widest kernel side captured. */
  readonly maxDim: number;
  /** The user's filter of capturable layers. */
  readonly include: ((layer: Layer) => boolean) | undefined;
}

/** A layer's classification: its kind's handler and description, or why it is first-order. */
export type Classification =
  | { readonly handler: LayerKindHandler; readonly description: LinearLayerDescription }
  | { readonly reason: string };

function isVariable(value: unknown): boolean {
  const variable = value as { name?: unknown; read?: unknown; shape?: unknown } | null;
  return typeof variable === 'object' && variable !== null && typeof variable.name === 'string' && typeof variable.read === 'function' && Array.isArray(variable.shape);
}

/** Checks what a handler's `describe` returned for a layer, naming `where`, the layer and its kind. */
function checkDescription(where: string, name: string, handler: LayerKindHandler, description: LinearLayerDescription): void {
  const at = `${where}: layer '${name}' (kind '${handler.kind}'): describe(layer)`;
  if (typeof description !== 'object' || description === null) {
    throw new TypeError(`${at} must return { kernel, bias, inputDim, outputDim } or undefined, got ${description === null ? 'null' : typeof description}`);
  }
  const { kernel, bias, inputDim, outputDim } = description;
  if (!isVariable(kernel)) throw new TypeError(`${at} returned a kernel that is not a layer variable`);
  if (bias !== null && !isVariable(bias)) throw new TypeError(`${at} returned a bias that is neither a layer variable nor null`);
  const size = kernel.shape.reduce((product: number, axis) => product * axis!, 1);
  if (!Number.isInteger(inputDim) || !Number.isInteger(outputDim) || inputDim < 1 || outputDim < 1 || inputDim * outputDim !== size) {
    throw new RangeError(
      `${at} returned inputDim ${inputDim} × outputDim ${outputDim}, which must be positive integers holding the kernel's ` +
        `[${kernel.shape.join(', ')}] (${size} entries)`,
    );
  }
  if (bias !== null && (bias.shape.length !== 1 || bias.shape[0] !== outputDim)) {
    throw new RangeError(`${at} returned a bias of shape [${bias.shape.join(', ')}], expected [${outputDim}] (outputDim)`);
  }
}

/**
 * Classifies a layer found by `walkModel`: second-order, with the handler of the kind whose
 * `classNames` hold its class and that kind's description of it, or first-order with the reason:
 * a class no kind covers, a configuration its kind does not capture, not built yet, wider than
 * `maxDim`, applied more than once per forward pass, or rejected by `include`. Throws, naming
 * `where`, when a handler describes the layer inconsistently.
 */
export function classifyLayer(where: string, walked: WalkedLayer, rules: ClassificationRules): Classification {
  const { layer, name, applications } = walked;
  const className = layer.getClassName();
  const handler = rules.kinds.find((kind) => kind.classNames.includes(className));
  if (handler === undefined) {
    const captured = rules.kinds.flatMap((kind) => kind.classNames).join(', ');
    return { reason: FIRST_ORDER_CLASSES.get(className) ?? `unsupported layer class '${className}' (captured: ${captured})` };
  }
  const unsupported = handler.unsupported?.(layer);
  if (unsupported !== undefined) return { reason: unsupported };
  const description = handler.describe(layer);
  if (description === undefined) return { reason: 'not built yet: build the model (or call it once) before prepareModel' };
  checkDescription(where, name, handler, description);
  const tooWide = widthReason(description.inputDim, description.outputDim, rules.maxDim);
  if (tooWide !== undefined) return { reason: tooWide };
  if (applications !== 1) return { reason: `shared: applied ${applications} times per forward pass, its statistics would mix the applications` };
  if (rules.include !== undefined && !rules.include(layer)) return { reason: 'excluded by options.include' };
  return { handler, description };
}
