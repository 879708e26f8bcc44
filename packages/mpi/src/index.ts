export { FLOAT16_WIRES, MPI_DEFAULT_TIMEOUT_MS, MpiTransport } from './mpi-transport';
export type { Float16Wire, MpiThreadLevel, MpiTransportOptions } from './mpi-transport';
export { MpiUnavailableError, defaultAddonPath } from './addon';
