import { Injectable } from '@nestjs/common';
import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { cleanupOpenApiDoc } from 'nestjs-zod';

/** The OpenAPI document, generated once from the controllers and their zod DTOs at start-up. */
@Injectable()
export class OpenApiService {
  private document: OpenAPIObject | undefined;

  generate(app: INestApplication, version: string): void {
    const config = new DocumentBuilder()
      .setTitle('DebVisor Datacenter Manager')
      .setDescription(
        'REST API of the DebVisor Datacenter Manager. Every operation needs `Authorization: Bearer <API token>` ' +
          'except those marked public; `x-debvisor-privilege` names the privilege and ACL path each one needs. ' +
          'Errors are `{"error": {"code", "message", "traceId"}}`.',
      )
      .setVersion(version)
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'An API token dvdm_…' })
      .build();
    this.document = cleanupOpenApiDoc(SwaggerModule.createDocument(app, config));
  }

  get(): OpenAPIObject {
    if (!this.document) throw new Error('the OpenAPI document was not generated at start-up');
    return this.document;
  }
}
