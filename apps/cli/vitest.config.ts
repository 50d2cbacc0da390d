import { projectConfig } from '../../vitest.shared';

// Unit specs next to the sources; test/ drives the CLI against a real manager and sim clusters.
export default projectConfig('cli', { testTimeout: 180_000 });
