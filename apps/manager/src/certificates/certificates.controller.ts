import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Audited } from '../audit/audited.decorator';
import { RequirePrivilege } from '../authz/privilege.decorator';
import {
  AcmeAccountDto,
  AcmeAccountParamsDto,
  AcmeSettingsDto,
  AcmeSettingsViewDto,
  CertificatesStatusDto,
  CreateAcmeAccountDto,
  UploadCertificateDto,
} from './certificates.dto';
import { CertificatesService } from './certificates.service';

@ApiTags('system')
@Controller('api/v1/system/certificates')
export class CertificatesController {
  constructor(private readonly certificates: CertificatesService) {}

  @Get()
  @ApiOperation({ summary: "The manager's HTTPS certificate, its renewal and the ACME accounts" })
  @RequirePrivilege('system.audit', '/')
  @ZodResponse({ type: CertificatesStatusDto, description: 'Secrets are never included' })
  status() {
    return this.certificates.status();
  }

  @Post('acme/accounts')
  @ApiOperation({ summary: 'Register an ACME account with a CA (optionally with EAB)' })
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.account.create', { target: '/system/certificates/acme/accounts' })
  @ZodResponse({
    status: 201,
    type: AcmeAccountDto,
    description: 'Registered; its key is stored sealed',
  })
  createAccount(@Body() body: CreateAcmeAccountDto) {
    return this.certificates.createAccount(body);
  }

  @Delete('acme/accounts/:id')
  @ApiOperation({ summary: 'Forget an ACME account (not in use by the settings)' })
  @HttpCode(204)
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.account.delete', {
    target: '/system/certificates/acme/accounts/{id}',
  })
  deleteAccount(@Param() params: AcmeAccountParamsDto): void {
    this.certificates.deleteAccount(params.id);
  }

  @Put('acme/settings')
  @ApiOperation({
    summary: 'Choose the account, names and challenge (HTTP-01 or DNS-01 over RFC 2136)',
  })
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.settings', { target: '/system/certificates/acme/settings' })
  @ZodResponse({
    type: AcmeSettingsViewDto,
    description: 'Saved; the TSIG secret is never returned',
  })
  setSettings(@Body() body: AcmeSettingsDto) {
    return this.certificates.setSettings(body);
  }

  @Post('acme/order')
  @ApiOperation({ summary: 'Order a certificate now and serve it (the old one stays on failure)' })
  @HttpCode(200)
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.order', { target: '/system/certificates' })
  @ZodResponse({ status: 200, type: CertificatesStatusDto, description: 'Issued and now served' })
  order() {
    return this.certificates.orderNow();
  }

  @Post('acme/revoke')
  @ApiOperation({
    summary: 'Revoke the served ACME certificate and go back to the self-signed one',
  })
  @HttpCode(200)
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.revoke', { target: '/system/certificates' })
  @ZodResponse({ status: 200, type: CertificatesStatusDto, description: 'Revoked at the CA' })
  revoke() {
    return this.certificates.revoke();
  }

  @Put('custom')
  @ApiOperation({ summary: 'Upload a certificate chain and key to serve instead' })
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.upload', { target: '/system/certificates' })
  @ZodResponse({ type: CertificatesStatusDto, description: 'Checked and now served' })
  upload(@Body() body: UploadCertificateDto) {
    return this.certificates.upload(body);
  }

  @Post('self-signed')
  @ApiOperation({ summary: 'Serve the self-signed default certificate again' })
  @HttpCode(200)
  @RequirePrivilege('system.modify', '/')
  @Audited('system.certificate.self-signed', { target: '/system/certificates' })
  @ZodResponse({ status: 200, type: CertificatesStatusDto, description: 'Now served' })
  useSelfSigned() {
    return this.certificates.useSelfSigned();
  }
}
