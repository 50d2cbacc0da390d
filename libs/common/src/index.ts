export * from './api-keys';
export * from './identifiers';
export * from './permissions';
export * from './rpc-metrics';
export * from './trace-id';
