import type { Layer } from './layer-kind';

/** A model, or a model used as a layer: a container with layers of its own. */
export interface Container {
  layers: Layer[];
  containerNodes: Set<string>;
}

/** A layer with trainable variables, found by {@link walkModel}. */
export interface WalkedLayer {
  readonly layer: Layer;
  /** Its name, qualified by the nested models it is in (`outer/inner`). */
  readonly name: string;
  /** The names of its trainable variables. */
  readonly variables: string[];
  /** How many times one forward pass of the model applies it (1 unless it is shared). */
  readonly applications: number;
}

/** Whether `layer` is a container (a model used as a layer, or the model itself). */
export function isContainer(layer: unknown): layer is Layer & Container {
  return typeof layer === 'object' && layer !== null && Array.isArray((layer as Partial<Container>).layers);
}

function trainableVariableNames(layer: Layer): string[] {
  return layer.weights.filter((w) => w.trainable).map((w) => w.name);
}

/**
 * How many times `container` applies `layer` in one forward pass: the layer's nodes that belong
 * to the container's graph (a Sequential applies each listed layer once per listing).
 */
function applicationsIn(container: Container, layer: Layer): number {
  if (container.containerNodes.size === 0) return container.layers.filter((l) => l === layer).length;
  const nodes = (layer as unknown as { inboundNodes: unknown[] }).inboundNodes;
  return nodes.filter((_, index) => container.containerNodes.has(`${layer.name}_ib-${index}`)).length;
}

/**
 * Applications per forward pass of every layer, through the nesting: a layer used in two places
 * (twice in one container, or in the model and in a nested model) counts both.
 */
function countApplications(model: Container): Map<Layer, number> {
  const applications = new Map<Layer, number>();
  const count = (container: Container, containerApplications: number): void => {
    for (const layer of new Set(container.layers)) {
      const times = containerApplications * applicationsIn(container, layer);
      applications.set(layer, (applications.get(layer) ?? 0) + times);
      if (isContainer(layer)) count(layer, times);
    }
  };
  count(model, 1);
  return applications;
}

/**
 * Every layer of `model` that has trainable variables and is not itself a model, once, in the
 * order of `model.layers` with nested models walked in place: their layers are named
 * `outer/inner`. Layers without trainable variables (Flatten, Dropout, activations) are skipped.
 */
export function walkModel(model: Container): WalkedLayer[] {
  const applications = countApplications(model);
  const walked: WalkedLayer[] = [];
  const seen = new Set<Layer>();
  const visit = (container: Container, prefix: string): void => {
    for (const layer of container.layers) {
      const variables = trainableVariableNames(layer);
      if (variables.length === 0 || seen.has(layer)) continue;
      seen.add(layer);
      const name = `${prefix}${layer.name}`;
      if (isContainer(layer)) visit(layer, `${name}/`);
      else walked.push({ layer, name, variables, applications: applications.get(layer)! });
    }
  };
  visit(model, '');
  return walked;
}
