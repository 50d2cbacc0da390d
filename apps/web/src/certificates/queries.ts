import { useQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';

export type CertificatesStatus = Schemas['CertificatesStatus_Output'];

export const certificateKeys = {
  all: ['certificates'] as const,
  status: () => [...certificateKeys.all, 'status'] as const,
};

/** The served certificate, its renewal, the ACME accounts and settings (never a secret). */
export function useCertificates() {
  return useQuery({
    queryKey: certificateKeys.status(),
    queryFn: (): Promise<CertificatesStatus> => unwrap(api.GET('/api/v1/system/certificates')),
  });
}
