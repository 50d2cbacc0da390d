export * from './api-keys';
export * from './identifiers';
export * from './permissions';
