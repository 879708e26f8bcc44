import { defineConfig } from 'tsup';

import base from '../../tsup.config.base';

/**
 * Two entries: the browser-safe main entry and the Node-only `worker-threads` subpath. Splitting
 * (also for CJS) puts the modules both use, such as the error classes, in one shared chunk, so
 * `instanceof TransportError` holds across the entries.
 */
export default defineConfig({
  ...base,
  entry: { index: 'src/index.ts', 'worker-threads': 'src/worker-threads/index.ts' },
  splitting: true,
});
