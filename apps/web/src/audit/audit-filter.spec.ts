import { describe, expect, it } from 'vitest';
import {
  auditFilter,
  detailsSummary,
  EMPTY_AUDIT_FILTER,
  exportFileName,
  localToRfc3339,
} from './audit-filter';

describe('the audit filter', () => {
  it('turns a datetime-local value (local time) into RFC 3339 in UTC', () => {
    expect(localToRfc3339('2025-03-01T14:30')).toBe(new Date(2025, 2, 1, 14, 30).toISOString());
    expect(localToRfc3339('2025-03-01T14:30:15')).toBe(
      new Date(2025, 2, 1, 14, 30, 15).toISOString(),
    );
    expect(localToRfc3339('2025-03-01T14:30:15.5')).toBe(
      new Date(2025, 2, 1, 14, 30, 15, 500).toISOString(),
    );
    expect(localToRfc3339('2025-02-31T10:00')).toBeNull();
    expect(localToRfc3339('yesterday')).toBeNull();
    expect(localToRfc3339('')).toBeNull();
  });

  it("sends only the fields that are set, trimmed, and which of the manager's own entries to show (by default all but its routine reads)", () => {
    expect(auditFilter(EMPTY_AUDIT_FILTER)).toEqual({
      filter: { system: 'no-routine' },
      errors: {},
    });
    const { filter, errors } = auditFilter({
      principal: ' admin@local ',
      action: 'vm.migrate',
      target: '/remotes/dc-east',
      outcome: 'success',
      from: '2025-03-01T10:00',
      to: '',
      system: 'all',
    });
    expect(errors).toEqual({});
    expect(filter).toEqual({
      principal: 'admin@local',
      action: 'vm.migrate',
      target: '/remotes/dc-east',
      outcome: 'success',
      from: new Date(2025, 2, 1, 10, 0).toISOString(),
      system: 'all',
    });
  });

  it('says what is wrong instead of asking the server', () => {
    const { errors } = auditFilter({
      ...EMPTY_AUDIT_FILTER,
      action: 'VM migrate',
      target: 'remotes/dc-east',
      from: '2025-03-02T10:00',
      to: '2025-03-01T10:00',
    });
    expect(Object.keys(errors).sort()).toEqual(['action', 'target', 'to']);
    expect(errors.to).toMatch(/later than From/);
    expect(
      auditFilter({ ...EMPTY_AUDIT_FILTER, from: '2025-13-01T10:00' }).errors.from,
    ).toBeDefined();
  });

  it('accepts the action names the manager writes', () => {
    for (const action of [
      'vm',
      'vm.migrate.preflight',
      'agent.call',
      'task.cancel',
      'auth.oidc.callback',
    ])
      expect(auditFilter({ ...EMPTY_AUDIT_FILTER, action }).errors).toEqual({});
  });

  it('names the export as the manager suggests, else by date', () => {
    const now = new Date('2025-03-01T12:00:00Z');
    expect(exportFileName('attachment; filename="debvisor-audit.jsonl"', now)).toBe(
      'debvisor-audit.jsonl',
    );
    expect(exportFileName(null, now)).toBe('debvisor-audit-2025-03-01.jsonl');
    expect(exportFileName('attachment; filename="../../etc/passwd"', now)).toBe(
      'debvisor-audit-2025-03-01.jsonl',
    );
  });

  it('summarizes the details of an entry on one line', () => {
    expect(detailsSummary({ targetRemote: 'dc-west', ok: true })).toBe(
      'targetRemote=dc-west, ok=true',
    );
    expect(detailsSummary({ long: 'x'.repeat(200) }, 20)).toHaveLength(20);
    expect(detailsSummary({})).toBe('');
  });
});
