import { formatBytes } from '../ui/format';
import type { VmDetail } from './queries';
import './resources.css';

/** A VM's disks: pool, image, size, bus. `hideCaption` keeps the caption for screen readers only (under a visible heading). */
export function DiskTable({
  disks,
  caption,
  hideCaption = false,
}: {
  disks: VmDetail['disks'];
  caption: string;
  hideCaption?: boolean;
}) {
  if (disks.length === 0) return <p className="muted">No disks.</p>;
  return (
    <table className="detail-table">
      <caption className={hideCaption ? 'visually-hidden' : undefined}>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Pool</th>
          <th scope="col">Image</th>
          <th scope="col" className="number">
            Size
          </th>
          <th scope="col">Bus</th>
        </tr>
      </thead>
      <tbody>
        {disks.map((disk) => (
          <tr key={`${disk.pool}/${disk.image}`}>
            <td>{disk.pool}</td>
            <th scope="row">{disk.image}</th>
            <td className="number">{formatBytes(disk.sizeBytes)}</td>
            <td>{disk.bus}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
