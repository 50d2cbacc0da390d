import { useInfiniteQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { AUDIT_PAGE_SIZE, type AuditFilter } from './audit-filter';

// GET successes are documented as the OpenAPI `default` answer, which openapi-fetch types as an error: the answer is named here.
type AuditPage = Schemas['AuditPageDto_Output'];

export const auditKeys = {
  all: ['audit'] as const,
  lists: () => [...auditKeys.all, 'list'] as const,
  list: (filter: AuditFilter) => [...auditKeys.lists(), filter] as const,
};

/** Audit entries matching the filter, newest first, a page at a time (fetchNextPage: older ones, through nextCursor). */
export function useAuditEntries(filter: AuditFilter) {
  return useInfiniteQuery({
    queryKey: auditKeys.list(filter),
    queryFn: ({ pageParam }): Promise<AuditPage> =>
      unwrap(
        api.GET('/api/v1/audit', {
          params: {
            query: {
              ...filter,
              limit: AUDIT_PAGE_SIZE,
              ...(pageParam === null ? {} : { cursor: pageParam }),
            },
          },
        }),
      ),
    initialPageParam: null as number | null,
    getNextPageParam: (page) => page.nextCursor,
  });
}
