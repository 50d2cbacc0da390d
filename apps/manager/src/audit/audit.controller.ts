import { Controller, Get, Query, StreamableFile } from '@nestjs/common';
import { ApiOkResponse, ApiProduces, ApiTags } from '@nestjs/swagger';
import { ZodResponse } from 'nestjs-zod';
import { Readable } from 'node:stream';
import { RequirePrivilege } from '../authz/privilege.decorator';
import { AuditExportQueryDto, AuditPageDto, AuditQueryDto } from './audit.dto';
import { AuditService } from './audit.service';

@ApiTags('audit')
@Controller('api/v1/audit')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @RequirePrivilege('audit.read', '/')
  @ZodResponse({ type: AuditPageDto, description: 'Audit entries, newest first, a page at a time' })
  list(@Query() query: AuditQueryDto) {
    return this.audit.list(query);
  }

  @Get('export')
  @RequirePrivilege('audit.read', '/')
  @ApiProduces('application/x-ndjson')
  @ApiOkResponse({
    description:
      'JSON lines, oldest first, with seq, prevHash and hash: verify with npm run audit:verify -- --file <export>',
    content: { 'application/x-ndjson': { schema: { type: 'string' } } },
  })
  async export(@Query() query: AuditExportQueryDto): Promise<StreamableFile> {
    const file = new StreamableFile(Readable.from(await this.audit.export(query)), {
      type: 'application/x-ndjson',
      disposition: 'attachment; filename="debvisor-audit.jsonl"',
    });
    // Headers are gone once streaming began: cut the connection, so that a broken export never looks complete.
    return file.setErrorHandler((_error, response) => response.destroy?.());
  }
}
