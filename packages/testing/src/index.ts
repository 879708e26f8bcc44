export * from './float64';
export * from './arbitraries';
export * from './memory';
export * from './sherman-morrison64';
