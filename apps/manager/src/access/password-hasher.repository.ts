import { Injectable } from '@nestjs/common';
import * as argon2 from 'argon2';

/**
 * argon2id password hashes (PHC strings). The parameters follow OWASP's recommendation (19 MiB,
 * 2 passes, 1 lane); verification reads them from the stored hash, so they can be raised later.
 */
@Injectable()
export class PasswordHasherRepository {
  private dummy: Promise<string> | undefined;

  hash(password: string): Promise<string> {
    return argon2.hash(password, { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
  }

  /** False for a wrong password or a hash that is not an argon2 PHC string. */
  async verify(hash: string, password: string): Promise<boolean> {
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false;
    }
  }

  /** Spends the time of one verification, for unknown or locked accounts (same answer, same timing). */
  async burn(password: string): Promise<void> {
    this.dummy ??= this.hash('debvisor-timing-equalizer');
    await this.verify(await this.dummy, password);
  }
}
