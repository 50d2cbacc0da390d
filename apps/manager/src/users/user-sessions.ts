import { Injectable } from '@nestjs/common';

/** Which sessions of a user a change ends: all of them (and any a racing login inserts), or all but the caller's. */
export type EndSessions = { readonly all: Date } | { readonly except: string };

type EndRule = (userId: string, end: EndSessions) => Promise<void>;

/**
 * How users/ (and the realm sync) end a user's sessions without importing sessions/, which
 * imports users/: the one rule lives in SessionsService, which registers it here when the
 * application starts. Called inside the caller's unit of work, so the change and the ended
 * sessions are one transaction.
 */
@Injectable()
export class UserSessions {
  private rule: EndRule | undefined;

  register(rule: EndRule): void {
    this.rule = rule;
  }

  end(userId: string, end: EndSessions): Promise<void> {
    if (!this.rule) throw new Error('no rule for ending sessions is registered (SessionsModule)');
    return this.rule(userId, end);
  }
}
