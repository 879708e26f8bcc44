/** Markdown output for the reports: tables and number formatting. */

/** A markdown table; cells are printed as given, numbers should be formatted by the caller. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A number with `digits` significant digits, without exponent notation for everyday magnitudes. */
export function formatNumber(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-3)) return value.toExponential(digits - 1);
  return Number(value.toPrecision(digits)).toString();
}

/** `median (IQR q1–q3)` of a timing, in milliseconds. */
export function formatTiming(timing: { medianMs: number; q1Ms: number; q3Ms: number }): string {
  return `${formatNumber(timing.medianMs)} (${formatNumber(timing.q1Ms)}–${formatNumber(timing.q3Ms)})`;
}
