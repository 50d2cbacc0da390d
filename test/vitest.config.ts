import { projectConfig } from '../vitest.shared';

// End-to-end tests: the whole stack as a user starts it.
export default projectConfig('e2e', { include: ['**/*.e2e.spec.ts'], testTimeout: 300_000 });
