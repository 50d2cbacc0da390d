import { Injectable, type OnModuleInit } from '@nestjs/common';
import { CallerCache } from '../authz/caller-cache';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { UserSessions, type EndSessions } from '../users/user-sessions';
import { UsersService } from '../users/users.service';
import { LoginRepository } from './login.repository';

/**
 * The sessions of users as other features see them: the one rule for ending a user's sessions
 * (registered with UserSessions, through which users/ and the realm sync call it) and the record
 * of a session's use.
 */
@Injectable()
export class SessionsService implements OnModuleInit {
  constructor(
    private readonly repository: LoginRepository,
    private readonly users: UsersService,
    private readonly userSessions: UserSessions,
    private readonly db: UnitOfWork,
    private readonly callers: CallerCache,
  ) {}

  onModuleInit(): void {
    this.userSessions.register((userId, end) => this.end(userId, end));
  }

  /**
   * Ends a user's sessions. `all`: every session, and any a racing login inserts with an earlier
   * start (the user's cut-off moves to `all`) — disabling, removing from the directory, a password
   * reset, "log out everywhere". `except`: every session but the caller's — a user changing their
   * own password. One transaction with the caller's change when called inside its unit of work.
   */
  async end(userId: string, end: EndSessions): Promise<void> {
    await this.db.run(async () => {
      if ('all' in end) {
        await this.users.voidSessionsBefore(userId, end.all);
        await this.repository.deleteSessionsOf(userId);
      } else {
        await this.repository.deleteSessionsOf(userId, end.except);
      }
    });
    this.callers.invalidate();
  }

  /** A session authenticated a request at `at` (written at most once a minute per session by the caller). */
  recordUse(id: string, at: Date): Promise<void> {
    return this.repository.touchSession(id, at);
  }
}
