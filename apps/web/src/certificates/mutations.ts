import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { certificateKeys, type CertificatesStatus } from './queries';

/** The Certificates page's changes; each reloads the page's status. */
function useReload() {
  const queryClient = useQueryClient();
  return () => queryClient.invalidateQueries({ queryKey: certificateKeys.all });
}

export function useCreateAcmeAccount() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['CreateAcmeAccount']) =>
      unwrap(api.POST('/api/v1/system/certificates/acme/accounts', { body })),
    onSuccess: reload,
  });
}

export function useDeleteAcmeAccount() {
  const reload = useReload();
  return useMutation({
    mutationFn: (id: string) =>
      unwrap(
        api.DELETE('/api/v1/system/certificates/acme/accounts/{id}', {
          params: { path: { id } },
        }),
      ),
    onSuccess: reload,
  });
}

export function useSaveAcmeSettings() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['AcmeSettings']) =>
      unwrap(api.PUT('/api/v1/system/certificates/acme/settings', { body })),
    onSuccess: reload,
  });
}

/** Orders now with the saved settings; the manager answers once the new certificate is served. */
export function useOrderCertificate() {
  const reload = useReload();
  return useMutation({
    mutationFn: (): Promise<CertificatesStatus> =>
      unwrap(api.POST('/api/v1/system/certificates/acme/order')),
    onSettled: reload,
  });
}

export function useUploadCertificate() {
  const reload = useReload();
  return useMutation({
    mutationFn: (body: Schemas['UploadCertificate']): Promise<CertificatesStatus> =>
      unwrap(api.PUT('/api/v1/system/certificates/custom', { body })),
    onSuccess: reload,
  });
}
