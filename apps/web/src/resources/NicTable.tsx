import type { VmDetail } from './queries';
import './resources.css';

/** A VM's network interfaces: MAC, bridge, model, VLAN. `hideCaption` keeps the caption for screen readers only. */
export function NicTable({
  nics,
  caption,
  hideCaption = false,
}: {
  nics: VmDetail['nics'];
  caption: string;
  hideCaption?: boolean;
}) {
  if (nics.length === 0) return <p className="muted">No network interfaces.</p>;
  return (
    <table className="detail-table">
      <caption className={hideCaption ? 'visually-hidden' : undefined}>{caption}</caption>
      <thead>
        <tr>
          <th scope="col">MAC</th>
          <th scope="col">Bridge</th>
          <th scope="col">Model</th>
          <th scope="col">VLAN</th>
        </tr>
      </thead>
      <tbody>
        {nics.map((nic) => (
          <tr key={nic.mac}>
            <th scope="row">
              <code>{nic.mac}</code>
            </th>
            <td>{nic.bridge}</td>
            <td>{nic.model}</td>
            <td>{nic.vlan ?? 'untagged'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
