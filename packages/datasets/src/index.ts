export { parseIdx } from './idx';
export type { IdxArray } from './idx';
export {
  DEBIAN_FASHION_MNIST_DIR,
  FASHION_MNIST_CLASSES,
  loadFashionMnist,
  splitToTensors,
} from './fashion-mnist';
export type { FashionMnistOptions, ImageSplit } from './fashion-mnist';
