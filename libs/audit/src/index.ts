export * from './audit-entry';
export * from './canonical-json';
export * from './chain';
export * from './file-chain';
export * from './normalize';
export * from './rotating-file';
export * from './verify';
export * from './verify-files';
