import { describe, expect, it } from 'vitest';

import { barChart, lineChart } from './index';

/** The numbers of every `<polyline points="…">` of an SVG text, as [x, y] pairs. */
function polylines(svg: string): number[][][] {
  return [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((match) => (match[1] as string).split(' ').map((pair) => pair.split(',').map(Number)));
}

/** The heights of the bars of a bar chart, in drawing order (the legend's 14-pixel swatches left out). */
function barHeights(svg: string): number[] {
  return [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="([\d.]+)" fill="#/g)].filter((match) => match[1] !== '14').map((match) => Number(match[2]));
}

describe('lineChart', () => {
  it('maps points linearly onto the plot area and skips non-finite ones', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', points: [[0, 0], [1, Number.NaN], [2, 1], [4, 2]] }] });
    const [line] = polylines(svg);
    expect(line).toHaveLength(3);
    // Equal steps in x and y stay equal steps in pixels (x 0→2→4, y 0→1→2), and y grows upwards.
    const [[x0, y0], [x1, y1], [x2, y2]] = line as [[number, number], [number, number], [number, number]];
    expect(x1 - x0).toBeCloseTo(x2 - x1, 0);
    expect(y1 - y0).toBeCloseTo(y2 - y1, 0);
    expect(y2).toBeLessThan(y0);
  });

  it('on a logarithmic axis spaces powers of ten equally and leaves out non-positive values', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', logY: true, series: [{ name: 'a', points: [[0, 1], [1, 10], [2, 100], [3, 0]] }] });
    const lines = polylines(svg);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toHaveLength(3);
    const [[, y0], [, y1], [, y2]] = lines[0] as [[number, number], [number, number], [number, number]];
    expect(y1 - y0).toBeCloseTo(y2 - y1, 0);
  });

  it('escapes names and labels as XML text', () => {
    const svg = lineChart({ title: 'a < b & c', xLabel: 'x', yLabel: 'y', series: [{ name: '"q"', points: [[0, 1]] }] });
    expect(svg).toContain('a &lt; b &amp; c');
    expect(svg).toContain('&quot;q&quot;');
    expect(svg).not.toContain('a < b');
  });
});

describe('barChart', () => {
  it('stacks series: each part is as tall as its value, on one scale for all categories', () => {
    const svg = barChart({ title: 't', yLabel: 'ms', categories: ['one', 'two'], stacked: true, series: [{ name: 'p', values: [1, 2] }, { name: 'q', values: [3, 0] }] });
    // Drawn category by category: one's p (1) and q (3), then two's p (2) and q (0).
    const [oneP, oneQ, twoP, twoQ] = barHeights(svg) as [number, number, number, number];
    expect(barHeights(svg)).toHaveLength(4);
    expect(oneQ).toBeCloseTo(3 * oneP, 0);
    expect(twoP).toBeCloseTo(2 * oneP, 0);
    expect(twoQ).toBe(0);
  });

  it('slants category labels only when they are wider than their slot', () => {
    const chart = (categories: string[]) => barChart({ title: 't', yLabel: 'ms', categories, series: [{ name: 'p', values: categories.map(() => 1) }] });
    expect(chart(['a', 'b'])).not.toContain('rotate(-25');
    const long = Array.from({ length: 8 }, (_, i) => `a rather long category ${i}`);
    expect(chart(long).match(/rotate\(-25 /g)).toHaveLength(8);
  });
});
