import { describeCertificate, splitPemBundle } from '@debvisor/pki';
import { Inject, Injectable } from '@nestjs/common';
import { MANAGER_IDENTITY, type ManagerIdentity } from './state-dir.repository';

/** The manager's certificates as operators need them (never a key). */
@Injectable()
export class IdentityService {
  constructor(@Inject(MANAGER_IDENTITY) private readonly identity: ManagerIdentity) {}

  describe() {
    const clientCa = describe(this.identity.client.caPem);
    return {
      clientCa: {
        ...clientCa,
        pem: splitPemBundle(this.identity.client.caPem)[0],
        path: this.identity.client.caFile,
      },
      server: {
        certificate: describe(this.identity.server.certPem),
        ca: {
          ...describe(this.identity.server.caPem),
          pem: splitPemBundle(this.identity.server.caPem)[0],
        },
      },
    };
  }
}

function describe(pem: string) {
  const summary = describeCertificate(splitPemBundle(pem)[0]);
  return {
    subject: summary.subject,
    fingerprintSha256: summary.fingerprintSha256,
    notBefore: summary.notBefore,
    notAfter: summary.notAfter,
  };
}
