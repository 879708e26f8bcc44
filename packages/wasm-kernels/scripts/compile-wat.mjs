// Compiles src/fused.wat into src/fused-binary.ts: the module for an unshared memory and the same
// module for the shared memory of tfjs-backend-wasm's threaded build, base64-encoded. Run it after
// editing fused.wat (`npm run compile-wat -w @mkor/wasm-kernels`). With `--check` it writes
// nothing and exits 1 when the committed file does not match the source (a test runs that).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import wabtInit from 'wabt';

const UNSHARED_IMPORT = '(import "env" "memory" (memory 1))';
const SHARED_IMPORT = '(import "env" "memory" (memory 1 65536 shared))';

/** Both binaries of the module in `source`, base64-encoded. */
export async function compileFused(source) {
  if (!source.includes(UNSHARED_IMPORT)) throw new Error(`fused.wat must import its memory as ${UNSHARED_IMPORT}`);
  const wabt = await wabtInit();
  const features = { simd: true, threads: true };
  const compile = (text) => {
    const module = wabt.parseWat('fused.wat', text, features);
    try {
      const binary = module.toBinary({}).buffer;
      // wabt.js's own validate() ignores the threads feature; the engine validates instead.
      if (!WebAssembly.validate(binary)) throw new Error('fused.wat: the compiled module does not validate');
      return Buffer.from(binary).toString('base64');
    } finally {
      module.destroy();
    }
  };
  return { unshared: compile(source), shared: compile(source.replace(UNSHARED_IMPORT, SHARED_IMPORT)) };
}

/** The generated TypeScript file for `binaries`. */
export function fusedBinaryModule({ unshared, shared }) {
  return `// Generated from fused.wat by scripts/compile-wat.mjs: do not edit.
/** The fused kernels' module for an unshared memory, base64. */
export const FUSED_MODULE_UNSHARED = '${unshared}';
/** The same module for a shared memory (tfjs-backend-wasm's threaded build), base64. */
export const FUSED_MODULE_SHARED = '${shared}';
`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const source = readFileSync(new URL('../src/fused.wat', import.meta.url), 'utf8');
  const target = new URL('../src/fused-binary.ts', import.meta.url);
  const generated = fusedBinaryModule(await compileFused(source));
  if (process.argv.includes('--check')) {
    if (readFileSync(target, 'utf8') !== generated) {
      console.error('src/fused-binary.ts does not match src/fused.wat: run `npm run compile-wat -w @mkor/wasm-kernels`');
      process.exit(1);
    }
    console.log('src/fused-binary.ts matches src/fused.wat');
  } else {
    writeFileSync(target, generated);
    console.log('wrote src/fused-binary.ts');
  }
}
