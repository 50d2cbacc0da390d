// Installs the Debian packages of scripts/lib/deps.mjs that are missing (as root), or names them.
// CI runs it before `npm ci`; `npm test` and `npm start` check the same list themselves.
import { ensureDebianPackages } from './lib/deps.mjs';

try {
  ensureDebianPackages();
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
