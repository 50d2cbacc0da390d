import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { CallerCache } from '../authz/caller-cache';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { GroupsRepository } from './groups.repository';
import type { VmOwnershipEntity } from './vm-ownership.entity';
import type { VmOwnerView } from './vm-owners.dto';

/** Which tenant group owns which VM: the members of a tenant group act only on the VMs it owns. */
@Injectable()
export class VmOwnersService {
  constructor(
    private readonly repository: GroupsRepository,
    private readonly callers: CallerCache,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
  ) {}

  async list(group?: string): Promise<{ items: VmOwnerView[] }> {
    return { items: (await this.repository.listVmOwners(group)).map(view) };
  }

  /** Gives the VM to a tenant group (taking it from the one that owned it, if any). */
  async set(vmUuid: string, tenantGroup: string): Promise<VmOwnerView> {
    const group = await this.repository.findGroup(tenantGroup);
    if (!group) throw DomainError.notFound(`group ${tenantGroup}`);
    if (!group.tenant)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        `tenantGroup: group ${tenantGroup} is not a tenant group (PUT /api/v1/access/groups/${tenantGroup} {"tenant": true} first)`,
      );
    const stored = await this.repository.setVmOwner(vmUuid, tenantGroup, this.clock.now());
    this.callers.invalidate();
    this.audit.note({ vm: vmUuid, tenantGroup });
    return view(stored);
  }

  async clear(vmUuid: string): Promise<void> {
    if (!(await this.repository.deleteVmOwner(vmUuid)))
      throw DomainError.notFound(`ownership of VM ${vmUuid}`);
    this.callers.invalidate();
    this.audit.note({ vm: vmUuid });
  }
}

function view(row: VmOwnershipEntity): VmOwnerView {
  return { vm: row.vmUuid, tenantGroup: row.tenantGroup, createdAt: row.createdAt.toISOString() };
}
