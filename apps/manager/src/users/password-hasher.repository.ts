import { Injectable } from '@nestjs/common';
import { hash, verify } from '@node-rs/argon2';

/** `Algorithm.Argon2id` of @node-rs/argon2 (a const enum, which isolated-module builds cannot inline). */
const ARGON2ID = 2;

/**
 * argon2id password hashes (PHC strings). The parameters follow OWASP's recommendation (19 MiB,
 * 2 passes, 1 lane); verification reads them from the stored hash, so they can be raised later.
 */
@Injectable()
export class PasswordHasherRepository {
  private dummy: Promise<string> | undefined;

  hash(password: string): Promise<string> {
    return hash(password, { algorithm: ARGON2ID, memoryCost: 19_456, timeCost: 2, parallelism: 1 });
  }

  /** False for a wrong password or a hash that is not an argon2 PHC string. */
  async verify(stored: string, password: string): Promise<boolean> {
    try {
      return await verify(stored, password);
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
