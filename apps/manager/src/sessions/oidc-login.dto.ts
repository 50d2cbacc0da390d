import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { realmIdSchema } from '../common/principal';

export class OidcRealmParamsDto extends createZodDto(z.strictObject({ realm: realmIdSchema })) {}
