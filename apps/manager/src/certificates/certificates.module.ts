import { Module } from '@nestjs/common';
import { AcmeRepository } from './acme.repository';
import { CertificateStoreRepository } from './certificate-store.repository';
import { CertificatesController } from './certificates.controller';
import { CertificatesService } from './certificates.service';
import { HttpChallengeRepository } from './http-challenge.repository';
import { HttpsEndpointRepository } from './https-endpoint.repository';
import { Rfc2136Repository } from './rfc2136.repository';

/** The manager's own HTTPS certificate: ACME (HTTP-01, DNS-01 over RFC 2136), upload, renewal, hot swap. */
@Module({
  controllers: [CertificatesController],
  providers: [
    CertificatesService,
    CertificateStoreRepository,
    HttpsEndpointRepository,
    HttpChallengeRepository,
    AcmeRepository,
    Rfc2136Repository,
  ],
  exports: [CertificatesService, HttpsEndpointRepository],
})
export class CertificatesModule {}
