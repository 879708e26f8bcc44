export { parseIdx } from './idx';
export type { IdxArray } from './idx';
export {
  DEBIAN_FASHION_MNIST_DIR,
  FASHION_MNIST_CLASSES,
  loadFashionMnist,
  splitToTensors,
} from './fashion-mnist';
export type { FashionMnistOptions, ImageSplit } from './fashion-mnist';
export { DEBIAN_COMMON_LICENSES_DIR, loadTextCorpus, sampleWindows } from './text-corpus';
export type { TextCorpus, TextCorpusOptions } from './text-corpus';
