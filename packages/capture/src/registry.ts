import { checkNumber } from '@mkor/core';

import { StatisticsStore } from './statistics-store';
import type { CaptureRegistry, FirstOrderLayer, LayerStatistics, SecondOrderLayer } from './types';

/** Widest layer (on either side) captured by default: larger factors cost `d²` memory each. */
export const DEFAULT_MAX_DIM = 4096;

/** Checks `maxDim`, an integer ≥ 1, naming `where` in the error. */
export function resolveMaxDim(where: string, maxDim: unknown): number {
  return checkNumber(where, 'maxDim', maxDim ?? DEFAULT_MAX_DIM, { min: 1, integer: true });
}

/** Why a layer of this shape is too wide to capture, or undefined when it fits. */
export function widthReason(inputDim: number, outputDim: number, maxDim: number): string | undefined {
  if (inputDim <= maxDim && outputDim <= maxDim) return undefined;
  return `wider than maxDim ${maxDim} (kernel ${inputDim} × ${outputDim}): its factors would hold ${Math.max(inputDim, outputDim)}² entries`;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

/**
 * The bookkeeping shared by {@link prepareModel} and {@link createCapture}: the layer lists,
 * the variable index and the statistics store, with the reading half of {@link CaptureRegistry}.
 */
export class RegistryState {
  readonly secondOrder: SecondOrderLayer[] = [];
  readonly firstOrder: FirstOrderLayer[] = [];
  readonly store = new StatisticsStore();
  private readonly byVariable = new Map<string, SecondOrderLayer>();
  private readonly names = new Set<string>();

  /** @param where the public function this state serves, named in its errors. */
  constructor(private readonly where: string) {}
  /** Set by `release()`: statistics read as undefined and wrapped calls run the original code. */
  released = false;

  addSecondOrder(layer: SecondOrderLayer): void {
    this.claim(layer);
    this.secondOrder.push(layer);
    this.byVariable.set(layer.kernelName, layer);
    if (layer.biasName !== undefined) this.byVariable.set(layer.biasName, layer);
  }

  addFirstOrder(layer: FirstOrderLayer): void {
    this.claim(layer);
    this.firstOrder.push(layer);
  }

  private claim(layer: SecondOrderLayer | FirstOrderLayer): void {
    if (this.names.has(layer.name)) throw new Error(`${this.where}: two layers are named '${layer.name}'`);
    this.names.add(layer.name);
  }

  /** The reading interface, with `release` running `undo` once before disposing the statistics. */
  registry(undo: () => void): CaptureRegistry {
    return {
      secondOrder: this.secondOrder,
      firstOrder: this.firstOrder,
      describe: () => this.describe(),
      layerForVariable: (variableName) => this.byVariable.get(variableName),
      statistics: (layerName): LayerStatistics | undefined =>
        this.released ? undefined : this.store.latest(layerName),
      release: () => {
        if (this.released) return;
        this.released = true;
        undo();
        this.store.clear();
      },
    };
  }

  describe(): string {
    const header = ['layer', 'kind', 'order', 'kernel (in × out)', 'variables', 'why first-order'];
    const second = this.secondOrder.map((layer) => [
      layer.name,
      layer.kind,
      'second',
      `${layer.inputDim} × ${layer.outputDim}`,
      [layer.kernelName, ...(layer.biasName === undefined ? [] : [layer.biasName])].join(', '),
      '',
    ]);
    const first = this.firstOrder.map((layer) => [layer.name, '-', 'first', '-', layer.variables.join(', '), layer.reason]);
    const summary = `${this.secondOrder.length} second-order, ${this.firstOrder.length} first-order layer(s)`;
    return `${table([header, ...second, ...first])}\n${summary}`;
  }
}
