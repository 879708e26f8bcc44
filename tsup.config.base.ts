import { defineConfig } from 'tsup';

/**
 * The one build every package shares: ESM + CJS + declarations for both formats
 * (`.d.ts` beside `.js`, `.d.cts` beside `.cjs`), tree-shakeable, peer and workspace
 * dependencies left external.
 */
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  treeshake: true,
  target: 'es2022',
  external: [/^@tensorflow\//, /^@mkor\//],
});
