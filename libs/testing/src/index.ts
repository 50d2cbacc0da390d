export * from './agent';
export * from './binaries';
export * from './etcd';
export * from './pki';
export * from './ports';
export * from './postgres';
export * from './processes';
export * from './temp';
