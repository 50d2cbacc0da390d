import { uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { groupIdSchema } from '../common/principal';

export class VmOwnerParamsDto extends createZodDto(
  z.strictObject({
    vmid: uuidSchema.transform((v) => v.toLowerCase()).meta({ description: 'The VM’s uuid' }),
  }),
) {}

export class SetVmOwnerDto extends createZodDto(
  z.strictObject({ tenantGroup: groupIdSchema.meta({ description: 'A tenant group' }) }),
) {}

export class VmOwnerQueryDto extends createZodDto(
  z.strictObject({
    group: groupIdSchema.optional().meta({ description: 'The VMs of this tenant group' }),
  }),
) {}

export const vmOwnerSchema = z.object({
  vm: z.string().meta({ description: 'The VM’s uuid' }),
  tenantGroup: z.string(),
  createdAt: z.iso.datetime().meta({ description: 'Since when the group owns it' }),
});
export type VmOwnerView = z.infer<typeof vmOwnerSchema>;
export class VmOwnerDto extends createZodDto(vmOwnerSchema) {}
export class VmOwnerListDto extends createZodDto(z.object({ items: z.array(vmOwnerSchema) })) {}
