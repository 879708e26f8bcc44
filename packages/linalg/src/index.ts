export { dampedInverse, newtonSchulzInverse } from './damped-inverse';
export type {
  DampedInverseMethod,
  DampedInverseOptions,
  NewtonSchulzOptions,
  NewtonSchulzResult,
} from './damped-inverse';
