/**
 * Vite configuration of the playground: a static build (relative paths, so `dist/` works from any
 * folder), cross-origin isolation headers on the dev and preview servers (tfjs-backend-wasm's
 * threads need `SharedArrayBuffer`), and the Fashion-MNIST files served from the local copy at
 * `fashion-mnist/<file>` (Debian's `dataset-fashion-mnist`, or `$MKOR_FASHION_MNIST_DIR`).
 */
import { createReadStream, existsSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';

import { type Plugin, defineConfig } from 'vite';

/** Where the dev and preview servers read the IDX files from. */
const fashionMnistDirectory = process.env.MKOR_FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';

/** The headers that make the page cross-origin isolated. */
const isolationHeaders = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

/**
 * A plugin answering `GET …/fashion-mnist/<name>` with `<name>.gz` or `<name>` from
 * {@link fashionMnistDirectory} (the bytes as stored; the page recognises gzip itself); 404 with
 * the folder named when neither exists.
 */
function fashionMnistFiles(): Plugin {
  const answer = (request: IncomingMessage, response: ServerResponse, next: () => void): void => {
    const name = /\/fashion-mnist\/([a-z0-9-]+-idx[13]-ubyte)(?:\.gz)?$/.exec(new URL(request.url ?? '/', 'http://localhost').pathname)?.[1];
    if (name === undefined) return next();
    const file = [join(fashionMnistDirectory, `${name}.gz`), join(fashionMnistDirectory, name)].find((path) => existsSync(path));
    if (file === undefined) {
      response.statusCode = 404;
      response.end(`no ${name}(.gz) in ${fashionMnistDirectory}: install Debian's dataset-fashion-mnist or set MKOR_FASHION_MNIST_DIR`);
      return;
    }
    response.setHeader('Content-Type', 'application/octet-stream');
    for (const [header, value] of Object.entries(isolationHeaders)) response.setHeader(header, value);
    createReadStream(file).pipe(response);
  };
  return {
    name: 'mkor-fashion-mnist-files',
    configureServer: (server) => void server.middlewares.use(answer),
    configurePreviewServer: (server) => void server.middlewares.use(answer),
  };
}

export default defineConfig({
  base: './',
  plugins: [fashionMnistFiles()],
  server: { headers: isolationHeaders },
  preview: { headers: isolationHeaders },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
});
