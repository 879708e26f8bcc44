import type { UpdateContext } from '@mkor/core';

import type { LayerStatistics } from './types';

/** The statistics a step receives, keyed by layer name (undefined: none captured yet). */
export type StatisticsByLayer = Readonly<Record<string, LayerStatistics | undefined>>;

/** The key of `UpdateContext.extras` under which the statistics travel. */
const STATISTICS_KEY = 'statistics';

/**
 * The statistics a step's context carries (`{}` when it carries none): the one way transforms
 * read what a `CaptureOptimizer`, or a data-parallel trainer's all-reduce, hands them. A value
 * that is not a map of statistics by layer name is refused with a `TypeError` naming `where`.
 */
export function statisticsOf(context: UpdateContext | undefined, where: string): StatisticsByLayer {
  const value = context?.extras?.[STATISTICS_KEY];
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${where}: context.extras.statistics must be statistics by layer name, got ${Array.isArray(value) ? 'an array' : String(value)}`);
  }
  return value as StatisticsByLayer;
}

/** A context's extras with `statistics` set: the one way to hand statistics to a step. */
export function extrasWithStatistics(
  extras: Readonly<Record<string, unknown>> | undefined,
  statistics: StatisticsByLayer,
): Readonly<Record<string, unknown>> {
  return { ...extras, [STATISTICS_KEY]: statistics };
}
