/**
 * Fashion-MNIST training images for the page: from the URL the playground's server answers
 * (`fashion-mnist/<file>`, Debian's copy), or from the two IDX files the user picks.
 */
import { gunzipIfCompressed, parseIdxBytes } from './idx';
import type { LabelledImages } from './train';

/** The file names of the training split, as Fashion-MNIST publishes them (gzipped or not). */
export const TRAINING_FILES = { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' } as const;

/**
 * The first `limit` images of an images file and a labels file (their raw bytes), pixels scaled
 * by 1/255 in float32. Throws, naming the file, when the shapes are not `[n, 28, 28]` and `[n]`.
 */
export async function labelledImagesFromBytes(
  imageBytes: Uint8Array,
  labelBytes: Uint8Array,
  limit: number,
  sources: { images: string; labels: string } = { images: TRAINING_FILES.images, labels: TRAINING_FILES.labels },
): Promise<LabelledImages> {
  if (!(Number.isInteger(limit) && limit > 0)) throw new RangeError(`labelledImagesFromBytes: limit must be a positive integer, got ${limit}`);
  const images = parseIdxBytes(await gunzipIfCompressed(imageBytes), sources.images);
  const labels = parseIdxBytes(await gunzipIfCompressed(labelBytes), sources.labels);
  const [available, rows, columns] = images.dims;
  if (images.dims.length !== 3 || rows !== 28 || columns !== 28 || available === undefined) {
    throw new Error(`labelledImagesFromBytes: ${sources.images} holds [${images.dims.join(', ')}], not [n, 28, 28] images`);
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== available) {
    throw new Error(`labelledImagesFromBytes: ${sources.labels} holds [${labels.dims.join(', ')}] labels for ${available} images`);
  }
  const count = Math.min(limit, available);
  const pixels = new Float32Array(count * 784);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (images.data[i] as number) / 255;
  return { images: pixels, labels: labels.data.slice(0, count), count };
}

/** The training split from `baseUrl` (the files of {@link TRAINING_FILES} under it), first `limit` images. */
export async function fetchTrainingImages(baseUrl: string, limit: number): Promise<LabelledImages> {
  const read = async (name: string): Promise<Uint8Array> => {
    const url = new URL(name, new URL(baseUrl, document.baseURI)).href;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`fetchTrainingImages: ${url} answered ${response.status} ${response.statusText}`);
    return new Uint8Array(await response.arrayBuffer());
  };
  const [imageBytes, labelBytes] = await Promise.all([read(TRAINING_FILES.images), read(TRAINING_FILES.labels)]);
  return labelledImagesFromBytes(imageBytes, labelBytes, limit, { images: `${baseUrl}${TRAINING_FILES.images}`, labels: `${baseUrl}${TRAINING_FILES.labels}` });
}

/** The training split from two files the user picked (an images file and a labels file, told apart by their names). */
export async function readPickedImages(files: readonly File[], limit: number): Promise<LabelledImages> {
  const images = files.find((file) => file.name.includes('images'));
  const labels = files.find((file) => file.name.includes('labels'));
  if (images === undefined || labels === undefined) {
    throw new Error(`readPickedImages: pick an images file and a labels file (e.g. ${TRAINING_FILES.images}.gz and ${TRAINING_FILES.labels}.gz), got ${files.map((file) => file.name).join(', ') || 'none'}`);
  }
  const [imageBytes, labelBytes] = await Promise.all([images, labels].map(async (file) => new Uint8Array(await file.arrayBuffer())));
  return labelledImagesFromBytes(imageBytes as Uint8Array, labelBytes as Uint8Array, limit, { images: images.name, labels: labels.name });
}
