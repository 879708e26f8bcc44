import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { extrasWithStatistics, statisticsOf } from './statistics-channel';
import type { LayerStatistics } from './types';

describe('the statistics channel', () => {
  it('hands statistics from extrasWithStatistics to statisticsOf, keeping the other extras', () => {
    const before = tf.memory().numTensors;
    const a = tf.tensor1d([1, 2]);
    const g = tf.tensor1d([3]);
    const dense: LayerStatistics = { a, g, rows: 4, samples: 4, step: 1 };
    const extras = extrasWithStatistics({ elapsedSeconds: 2 }, { dense, other: undefined });
    expect(extras.elapsedSeconds).toBe(2);
    const read = statisticsOf({ extras }, 'test');
    expect(read.dense).toBe(dense);
    expect('other' in read && read.other === undefined).toBe(true);
    tf.dispose([a, g]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reads no statistics as {} and refuses what is not a map by layer name', () => {
    expect(statisticsOf(undefined, 'test')).toEqual({});
    expect(statisticsOf({ extras: { elapsedSeconds: 1 } }, 'test')).toEqual({});
    expect(() => statisticsOf({ extras: { statistics: 3 } }, 'kfacPreconditioner')).toThrow(
      'kfacPreconditioner: context.extras.statistics must be statistics by layer name, got 3',
    );
    expect(() => statisticsOf({ extras: { statistics: [] } }, 'x')).toThrow('got an array');
    expect(() => statisticsOf({ extras: { statistics: null } }, 'x')).toThrow('got null');
  });
});
