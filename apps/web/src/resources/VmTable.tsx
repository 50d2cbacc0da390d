import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useId, useRef } from 'react';
import { formatBytes, formatPercent } from '../ui/format';
import { href } from '../view';
import { ariaSort, nextSort, pagesFor, rowAt, type Sort, type SortColumn } from './paging';
import { useVmPages, type VmResource } from './queries';
import { unknownStateInWords, type VmSeen } from './vm-state';

const ROW_HEIGHT = 37;
const HEAD_HEIGHT = 38;

const COLUMNS: { label: string; sort?: SortColumn; numeric?: boolean }[] = [
  { label: 'Name', sort: 'name' },
  { label: 'Status', sort: 'status' },
  { label: 'Remote', sort: 'remote' },
  { label: 'Node', sort: 'node' },
  { label: 'vCPUs', numeric: true },
  { label: 'Memory', sort: 'memory', numeric: true },
  { label: 'CPU', sort: 'cpu', numeric: true },
  { label: 'Owner' },
];

export function VmStatusBadge({ status }: { status: string }) {
  return <span className={`badge badge-${status} vm-badge`}>{status}</span>;
}

/** "state unknown — last seen …" for a VM of a node that does not answer (UTC on hover); nothing otherwise. */
export function VmLastSeen({ vm }: { vm: VmSeen }) {
  const words = unknownStateInWords(vm);
  if (!words) return null;
  return (
    <span className="muted vm-last-seen" data-testid="vm-last-seen" title={words.utc ?? undefined}>
      {words.text}
    </span>
  );
}

function VmRow({
  vm,
  index,
  owner,
  measure,
}: {
  vm: VmResource;
  index: number;
  owner: string | null;
  measure: (row: HTMLTableRowElement | null) => void;
}) {
  return (
    <tr
      ref={measure}
      data-index={index}
      data-testid="vm-row"
      data-vm-id={vm.id}
      data-remote={vm.remote}
      aria-rowindex={index + 2}
      className={vm.stale ? 'stale' : undefined}
      title={vm.stale ? 'The remote is unreachable: last known state' : undefined}
    >
      <th scope="row">
        <a href={href({ page: 'vm', remote: vm.remote, vmid: vm.id })}>{vm.name}</a>
      </th>
      <td>
        <VmStatusBadge status={vm.status} /> <VmLastSeen vm={vm} />
        {vm.lockedBy && (
          <span className="muted" title={`Locked by ${vm.lockedBy}`}>
            {' '}
            <span aria-hidden="true">🔒</span>
            <span className="visually-hidden">locked</span>
          </span>
        )}
      </td>
      <td>{vm.remote}</td>
      <td>{vm.node}</td>
      <td className="number">{vm.vcpus}</td>
      <td className="number">{formatBytes(vm.memoryBytes)}</td>
      <td className="number">{vm.status === 'running' ? formatPercent(vm.cpuUsage) : '—'}</td>
      <td>{owner ?? <span className="muted">—</span>}</td>
    </tr>
  );
}

/**
 * The matching VMs as one table of `total` rows that renders only the rows in view and fetches
 * their pages from the manager as they scroll in (server-side filtering, sorting and paging).
 */
export function VmTable({
  q,
  sort,
  total,
  owners,
  onSort,
}: {
  q: string;
  sort: Sort | undefined;
  total: number;
  owners: ReadonlyMap<string, string> | undefined;
  onSort: (sort: Sort) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const captionId = useId();
  const virtualizer = useVirtualizer({
    count: total,
    getScrollElement: () => box.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    paddingStart: HEAD_HEIGHT,
  });
  const items = virtualizer.getVirtualItems();
  const loaded = useVmPages(
    q,
    sort,
    pagesFor(items[0]?.index ?? 0, items[items.length - 1]?.index ?? -1),
  );

  // A new search or order starts at the top.
  useEffect(() => {
    virtualizer.scrollToOffset(0);
  }, [q, sort, virtualizer]);

  const before = items.length > 0 ? items[0].start - HEAD_HEIGHT : 0;
  const after = items.length > 0 ? virtualizer.getTotalSize() - items[items.length - 1].end : 0;
  return (
    <div
      ref={box}
      className="scroll-box vm-box"
      role="region"
      tabIndex={0}
      aria-labelledby={captionId}
    >
      <table className="vm-table" aria-rowcount={total + 1} aria-busy={loaded.fetching}>
        <caption id={captionId} className="visually-hidden">
          Matching VMs ({total}); sortable by the column buttons
        </caption>
        <thead>
          <tr aria-rowindex={1}>
            {COLUMNS.map((column) => (
              <th
                key={column.label}
                scope="col"
                className={column.numeric ? 'number' : undefined}
                aria-sort={column.sort ? ariaSort(sort, column.sort) : undefined}
              >
                {column.sort ? (
                  <button
                    type="button"
                    className="sort"
                    onClick={() => onSort(nextSort(sort, column.sort!))}
                  >
                    {column.label}
                    <span aria-hidden="true" className="sort-mark">
                      {ariaSort(sort, column.sort) === 'ascending'
                        ? '▲'
                        : ariaSort(sort, column.sort) === 'descending'
                          ? '▼'
                          : '↕'}
                    </span>
                  </button>
                ) : (
                  column.label
                )}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {before > 0 && (
            <tr aria-hidden="true" className="spacer">
              <td colSpan={COLUMNS.length} style={{ height: before }} />
            </tr>
          )}
          {items.map((item) => {
            const vm = rowAt(loaded.pages, item.index);
            return vm ? (
              <VmRow
                key={`${vm.remote}/${vm.id}`}
                vm={vm}
                index={item.index}
                owner={owners?.get(vm.id.toLowerCase()) ?? vm.tenant}
                measure={virtualizer.measureElement}
              />
            ) : (
              <tr
                key={`loading-${item.index}`}
                ref={virtualizer.measureElement}
                data-index={item.index}
                className="loading-row"
                aria-rowindex={item.index + 2}
              >
                <td colSpan={COLUMNS.length} className="muted">
                  Loading…
                </td>
              </tr>
            );
          })}
          {after > 0 && (
            <tr aria-hidden="true" className="spacer">
              <td colSpan={COLUMNS.length} style={{ height: after }} />
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
