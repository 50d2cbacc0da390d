import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const EXTRA_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/usr/local/bin', '/usr/local/sbin'];

/** Full path of `name`, or undefined when it is not installed. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...EXTRA_DIRS].filter(Boolean);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Full path of `name`; throws naming the Debian package to install when it is missing. */
export function requireBinary(name: string, debianPackage: string): string {
  const found = findBinary(name);
  if (!found) {
    throw new Error(
      `${name} is not installed: install the Debian package ${debianPackage} (apt-get install ${debianPackage})`,
    );
  }
  return found;
}
