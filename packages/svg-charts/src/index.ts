/**
 * A small SVG chart writer, shared by the benchmarks' reports and the playground page: line charts
 * (linear or logarithmic axes) and grouped or stacked bar charts, as self-contained SVG text (no
 * fonts, scripts or external files), so the same text goes into a report file or a page's DOM.
 */

/** One line of a {@link lineChart}: points `[x, y]`, drawn in the order given. */
export interface LineSeries {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

/** Options of {@link lineChart}. */
export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  readonly logX?: boolean;
  readonly logY?: boolean;
  /** Horizontal reference lines (e.g. a target loss), with labels. */
  readonly horizontalLines?: readonly { readonly y: number; readonly label: string }[];
}

/** Options of {@link barChart}: `values[s][c]` is series s at category c. */
export interface BarChartOptions {
  readonly title: string;
  readonly yLabel: string;
  readonly categories: readonly string[];
  readonly series: readonly { readonly name: string; readonly values: readonly number[] }[];
  /** Stack the series of a category instead of placing them side by side. */
  readonly stacked?: boolean;
}

const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { left: 78, right: 190, top: 40, bottom: 56 };
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** The colour of the i-th series (cycled). */
function colour(i: number): string {
  return PALETTE[i % PALETTE.length] as string;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A tick label: short, exponent notation for very large or small magnitudes. */
function tickLabel(value: number): string {
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(0);
  return Number(value.toPrecision(3)).toString();
}

/** About `count` round tick values covering [low, high] (linear axis). */
function linearTicks(low: number, high: number, count = 5): number[] {
  const span = high - low || Math.abs(high) || 1;
  const rough = span / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const ticks: number[] = [];
  for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** Powers of ten covering [low, high] (logarithmic axis, positive bounds). */
function logTicks(low: number, high: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(low)); e <= Math.ceil(Math.log10(high)); e++) ticks.push(10 ** e);
  return ticks;
}

interface Axis {
  readonly toPixel: (value: number) => number;
  readonly ticks: number[];
}

function axis(values: readonly number[], log: boolean, pixelLow: number, pixelHigh: number, includeZero: boolean): Axis {
  const usable = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  let low = usable.length === 0 ? (log ? 1 : 0) : Math.min(...usable);
  let high = usable.length === 0 ? (log ? 10 : 1) : Math.max(...usable);
  if (includeZero && !log) low = Math.min(0, low);
  if (log) {
    low = 10 ** Math.floor(Math.log10(low));
    high = 10 ** Math.ceil(Math.log10(high));
    if (low === high) high = low * 10;
    const transform = Math.log10;
    return {
      toPixel: (v) => pixelLow + ((transform(v) - transform(low)) / (transform(high) - transform(low))) * (pixelHigh - pixelLow),
      ticks: logTicks(low, high),
    };
  }
  if (low === high) {
    low -= Math.abs(low) * 0.1 || 1;
    high += Math.abs(high) * 0.1 || 1;
  }
  const ticks = linearTicks(low, high);
  low = Math.min(low, ticks[0] ?? low);
  high = Math.max(high, ticks.at(-1) ?? high);
  return { toPixel: (v) => pixelLow + ((v - low) / (high - low)) * (pixelHigh - pixelLow), ticks };
}

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  const plotBottom = HEIGHT - MARGIN.bottom;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
    `<text x="${(MARGIN.left + WIDTH - MARGIN.right) / 2}" y="${HEIGHT - 14}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text x="16" y="${(MARGIN.top + plotBottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(MARGIN.top + plotBottom) / 2})">${escapeXml(yLabel)}</text>`,
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${WIDTH - MARGIN.left - MARGIN.right}" height="${plotBottom - MARGIN.top}" fill="none" stroke="#333"/>`,
    ...body,
    '</svg>',
  ].join('\n');
}

function legend(names: readonly string[]): string[] {
  const x = WIDTH - MARGIN.right + 14;
  return names.flatMap((name, i) => {
    const y = MARGIN.top + 10 + i * 18;
    return [
      `<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${colour(i)}"/>`,
      `<text x="${x + 20}" y="${y}">${escapeXml(name)}</text>`,
    ];
  });
}

/** A line chart as SVG text; non-finite points (and non-positive ones on a log axis) are skipped. */
export function lineChart(options: LineChartOptions): string {
  const { series, logX = false, logY = false } = options;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...series.flatMap((s) => s.points.map((p) => p[1])), ...(options.horizontalLines ?? []).map((l) => l.y)];
  const x = axis(xs, logX, MARGIN.left, WIDTH - MARGIN.right, false);
  const y = axis(ys, logY, HEIGHT - MARGIN.bottom, MARGIN.top, false);
  const drawable = (px: number, py: number): boolean => Number.isFinite(px) && Number.isFinite(py) && (!logX || px > 0) && (!logY || py > 0);
  const body: string[] = [];
  for (const t of x.ticks) {
    const px = x.toPixel(t);
    body.push(`<line x1="${px}" y1="${HEIGHT - MARGIN.bottom}" x2="${px}" y2="${HEIGHT - MARGIN.bottom + 5}" stroke="#333"/>`);
    body.push(`<text x="${px}" y="${HEIGHT - MARGIN.bottom + 18}" text-anchor="middle">${tickLabel(t)}</text>`);
  }
  for (const t of y.ticks) {
    const py = y.toPixel(t);
    body.push(`<line x1="${MARGIN.left}" y1="${py}" x2="${WIDTH - MARGIN.right}" y2="${py}" stroke="#eee"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${py + 4}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  for (const line of options.horizontalLines ?? []) {
    const py = y.toPixel(line.y);
    body.push(`<line x1="${MARGIN.left}" y1="${py}" x2="${WIDTH - MARGIN.right}" y2="${py}" stroke="#555" stroke-dasharray="6 4"/>`);
    body.push(`<text x="${WIDTH - MARGIN.right - 4}" y="${py - 4}" text-anchor="end" fill="#555">${escapeXml(line.label)}</text>`);
  }
  series.forEach((s, i) => {
    const points = s.points.filter(([px, py]) => drawable(px, py)).map(([px, py]) => `${x.toPixel(px).toFixed(1)},${y.toPixel(py).toFixed(1)}`);
    if (points.length > 1) body.push(`<polyline fill="none" stroke="${colour(i)}" stroke-width="1.6" points="${points.join(' ')}"/>`);
    if (points.length <= 12) {
      for (const p of points) {
        const [cx, cy] = p.split(',');
        body.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${colour(i)}"/>`);
      }
    }
  });
  body.push(...legend(series.map((s) => s.name)));
  return frame(options.title, options.xLabel, options.yLabel, body);
}

/** A grouped (or stacked) bar chart as SVG text; the y axis starts at 0; category labels too wide for their slot are slanted. */
export function barChart(options: BarChartOptions): string {
  const { categories, series, stacked = false } = options;
  const totals = categories.map((_, c) => series.reduce((sum, s) => sum + Math.max(0, s.values[c] ?? 0), 0));
  const heights = stacked ? totals : series.flatMap((s) => s.values.map((v) => Math.max(0, v)));
  const y = axis([0, ...heights], false, HEIGHT - MARGIN.bottom, MARGIN.top, true);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const slot = plotWidth / Math.max(1, categories.length);
  const barWidth = stacked ? slot * 0.6 : (slot * 0.8) / Math.max(1, series.length);
  // Labels wider than their slot (at about 6.5 pixels a character) are slanted so they do not overlap.
  const slanted = categories.some((category) => category.length * 6.5 > slot);
  const body: string[] = [];
  for (const t of y.ticks) {
    const py = y.toPixel(t);
    body.push(`<line x1="${MARGIN.left}" y1="${py}" x2="${WIDTH - MARGIN.right}" y2="${py}" stroke="#eee"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${py + 4}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  categories.forEach((category, c) => {
    const left = MARGIN.left + c * slot;
    let base = 0;
    series.forEach((s, i) => {
      const value = Math.max(0, s.values[c] ?? 0);
      if (!Number.isFinite(value)) return;
      const x = stacked ? left + slot * 0.2 : left + slot * 0.1 + i * barWidth;
      const top = y.toPixel(stacked ? base + value : value);
      const bottom = y.toPixel(stacked ? base : 0);
      body.push(`<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${barWidth.toFixed(1)}" height="${Math.max(0, bottom - top).toFixed(1)}" fill="${colour(i)}"/>`);
      if (stacked) base += value;
    });
    const labelX = (left + slot / 2).toFixed(1);
    const labelY = HEIGHT - MARGIN.bottom + 18;
    body.push(
      slanted
        ? `<text x="${labelX}" y="${labelY}" text-anchor="end" transform="rotate(-25 ${labelX} ${labelY})">${escapeXml(category)}</text>`
        : `<text x="${labelX}" y="${labelY}" text-anchor="middle">${escapeXml(category)}</text>`,
    );
  });
  body.push(...legend(series.map((s) => s.name)));
  return frame(options.title, '', options.yLabel, body);
}
