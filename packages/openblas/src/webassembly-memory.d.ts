// The part of Node.js's WebAssembly global the tests use; the repository's lib (ES2022, no DOM)
// does not declare it.
declare namespace WebAssembly {
  class Memory {
    constructor(descriptor: { initial: number; maximum?: number; shared?: boolean });
    readonly buffer: ArrayBuffer;
  }
}
