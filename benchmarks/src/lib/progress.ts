/**
 * A progress bar on stderr for long benchmark suites: redrawn in place on a terminal, one line
 * every 10 % otherwise (CI logs), so the report on stdout stays clean.
 */
import { performance } from 'node:perf_hooks';

/** A progress bar over `total` units of work. */
export interface ProgressBar {
  /** Marks `units` more done and names what is running now. */
  tick(label: string, units?: number): void;
  /** Adds `units` to the total (work found to be needed on the way). */
  grow(units: number): void;
  /** Ends the bar (prints the elapsed time). */
  done(): void;
}

/** Starts a progress bar titled `title` over `total` units. */
export function progressBar(title: string, initialTotal: number): ProgressBar {
  let total = initialTotal;
  const start = performance.now();
  const interactive = process.stderr.isTTY === true;
  let completed = 0;
  let lastDecile = -1;
  const render = (label: string): void => {
    const fraction = total > 0 ? Math.min(1, completed / total) : 1;
    const width = 30;
    const filled = Math.round(fraction * width);
    const elapsed = (performance.now() - start) / 1000;
    const eta = fraction > 0 ? (elapsed / fraction) * (1 - fraction) : Number.NaN;
    const line = `${title} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(100 * fraction).toFixed(0)}% ${elapsed.toFixed(0)} s${Number.isFinite(eta) ? `, ~${eta.toFixed(0)} s left` : ''} ${label}`;
    if (interactive) {
      process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 120) - 1).padEnd((process.stderr.columns ?? 120) - 1)}`);
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile !== lastDecile) {
        lastDecile = decile;
        process.stderr.write(`${line}\n`);
      }
    }
  };
  render('');
  return {
    tick(label: string, units = 1): void {
      completed += units;
      render(label);
    },
    grow(units: number): void {
      total += units;
    },
    done(): void {
      completed = total;
      render('done');
      if (interactive) process.stderr.write('\n');
    },
  };
}
