import { useMutation } from '@tanstack/react-query';
import { api, unwrap } from '../api/client';
import { exportFileName, type AuditFilter } from './audit-filter';
import { saveFile } from './save-file';

/**
 * GET /audit/export with the page's filters, through the typed client (so that an API token goes
 * along, not only the session cookie), saved as a file. A request the user starts, not cached data:
 * hence a mutation, though it changes nothing.
 */
export function useAuditExport() {
  return useMutation({
    mutationFn: async (filter: AuditFilter) => {
      const answer = await api.GET('/api/v1/audit/export', {
        params: { query: filter },
        parseAs: 'blob',
      });
      const blob = await unwrap(Promise.resolve(answer));
      const fileName = exportFileName(
        answer.response.headers.get('Content-Disposition'),
        new Date(),
      );
      saveFile(blob as Blob, fileName);
      return { fileName, bytes: (blob as Blob).size };
    },
  });
}
