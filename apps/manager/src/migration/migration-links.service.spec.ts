import { describe, expect, it } from 'vitest';
import { MigrationLinks, type LeaseWait } from './migration-links.service';

const CAP = 100_000_000;

function waiting(notes: string[] = [], signal = new AbortController().signal): LeaseWait {
  return { signal, onWait: async (note) => void notes.push(note) };
}

describe('MigrationLinks: a per-link bandwidth cap shared by the migrations on the link', () => {
  it('leaves migrations within one remote, and every migration without a cap, at their own limit', async () => {
    const capped = new MigrationLinks({ migrationLinkCapBytes: CAP });
    expect((await capped.lease('dc-east', 'dc-east', 't1', 0, waiting()))!.bytesPerSecond).toBe(0);
    expect(capped.capOf('dc-east', 'dc-east')).toBeNull();
    const uncapped = new MigrationLinks({ migrationLinkCapBytes: 0 });
    expect((await uncapped.lease('dc-east', 'dc-west', 't1', 0, waiting()))!.bytesPerSecond).toBe(
      0,
    );
    expect(
      (await uncapped.lease('dc-east', 'dc-west', 't2', 5_000, waiting()))!.bytesPerSecond,
    ).toBe(5_000);
    expect(uncapped.capOf('dc-east', 'dc-west')).toBeNull();
  });

  it('gives an unlimited migration the whole cap and one with a limit under it its own limit', async () => {
    const links = new MigrationLinks({ migrationLinkCapBytes: CAP });
    expect(links.capOf('dc-west', 'dc-east')).toBe(CAP);
    const limited = await links.lease('dc-east', 'dc-west', 't1', 40_000_000, waiting());
    expect(limited!.bytesPerSecond).toBe(40_000_000);
    // the other direction is the same link: what is left of the cap
    const rest = await links.lease('dc-west', 'dc-east', 't2', 0, waiting());
    expect(rest!.bytesPerSecond).toBe(60_000_000);
  });

  it('makes a migration wait while the others use the whole cap, says so once, and gives it what a release frees', async () => {
    const links = new MigrationLinks({ migrationLinkCapBytes: CAP });
    const first = (await links.lease('dc-east', 'dc-west', 't1', 0, waiting()))!;
    const notes: string[] = [];
    let second: number | undefined;
    const waitingLease = links
      .lease('dc-east', 'dc-west', 't2', 70_000_000, waiting(notes))
      .then((lease) => (second = lease!.bytesPerSecond));
    await expect.poll(() => notes).toHaveLength(1);
    expect(notes[0]).toBe(
      `waiting for bandwidth on the link dc-east ⇄ dc-west: 1 migration uses all of its ${CAP} bytes/s cap`,
    );
    expect(second).toBeUndefined();
    first.release();
    await waitingLease;
    expect(second).toBe(70_000_000);
    expect(notes).toHaveLength(1);
    // a release twice frees nothing more
    first.release();
    expect((await links.lease('dc-east', 'dc-west', 't3', 0, waiting()))!.bytesPerSecond).toBe(
      30_000_000,
    );
  });

  it('stops waiting when the migration is cancelled or the manager shuts down', async () => {
    const links = new MigrationLinks({ migrationLinkCapBytes: CAP });
    await links.lease('dc-east', 'dc-west', 't1', 0, waiting());
    const stop = new AbortController();
    const notes: string[] = [];
    const lease = links.lease('dc-east', 'dc-west', 't2', 0, waiting(notes, stop.signal));
    await expect.poll(() => notes).toHaveLength(1);
    stop.abort();
    await expect(lease).resolves.toBeUndefined();
  });
});
