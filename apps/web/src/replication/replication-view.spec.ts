import { describe, expect, it } from 'vitest';
import {
  healthInWords,
  otherRemote,
  riskInWords,
  rolesInWords,
  rpoInWords,
  rpoLevel,
} from './replication-view';

describe('a mirrored VM in words', () => {
  it('says whether the RPO is within or over its target, not only in colour', () => {
    expect(rpoInWords({ rpoSeconds: 252, rpoTargetSeconds: 900, rpoExceeded: false })).toBe(
      '4 min 12 s, within its 15 min target',
    );
    expect(rpoInWords({ rpoSeconds: 1320, rpoTargetSeconds: 900, rpoExceeded: true })).toBe(
      '22 min: over its 15 min target',
    );
    expect(rpoInWords({ rpoSeconds: null, rpoTargetSeconds: 900, rpoExceeded: null })).toMatch(
      /^unknown/,
    );
    expect(rpoLevel({ rpoSeconds: 1320, rpoTargetSeconds: 900, rpoExceeded: true })).toBe('over');
    expect(rpoLevel({ rpoSeconds: null, rpoTargetSeconds: 900, rpoExceeded: null })).toBe(
      'unknown',
    );
  });

  it('names both sites and where a switchover would go', () => {
    const row = {
      primaryRemote: 'dc-east',
      source: { remote: 'dc-east', pool: 'rbd', role: 'primary' as const },
      target: { remote: 'dc-west', pool: 'rbd', role: 'secondary' as const },
    };
    expect(rolesInWords(row)).toBe('primary at dc-east, secondary at dc-west');
    expect(otherRemote(row)).toBe('dc-west');
    expect(otherRemote({ ...row, primaryRemote: 'dc-west' })).toBe('dc-east');
  });

  it('says split brain in words', () => {
    expect(healthInWords('split-brain')).toBe('split brain: primary at both sites');
  });
});

describe('the data at risk of a failover, in words', () => {
  it('names the RPO, the last mirrored snapshot in UTC and the fencing', () => {
    const preview = {
      from: 'dc-east',
      to: 'dc-west',
      rpoSeconds: 252,
      lastMirroredSnapshotAt: '2026-12-07T13:30:37.128Z',
      sourceReachable: true,
    };
    expect(riskInWords('files-01', preview)).toMatch(
      /^Everything files-01 wrote to its disks at dc-east in the last 4 min 12 s — since .+ \(2026-12-07 13:30:37 UTC\) is lost\. dc-east answers: .+fenced/,
    );
    expect(riskInWords('files-01', { ...preview, sourceReachable: false })).toContain(
      'dc-east does not answer and cannot be fenced',
    );
    expect(riskInWords('files-01', { ...preview, rpoSeconds: null })).toMatch(
      /^Neither site could say/,
    );
  });
});
