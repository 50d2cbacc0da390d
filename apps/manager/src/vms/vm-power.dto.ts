import { remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

export class VmTargetParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, vmid: uuidSchema }),
) {}
