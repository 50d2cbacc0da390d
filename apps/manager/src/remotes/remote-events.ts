import { Injectable } from '@nestjs/common';

export type RemoteEvent = { readonly type: 'changed' | 'removed'; readonly remoteId: string };

/** Tells other features (the resource cache) that a remote was changed or removed. */
@Injectable()
export class RemoteEvents {
  private readonly listeners = new Set<(event: RemoteEvent) => void>();

  subscribe(listener: (event: RemoteEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: RemoteEvent): void {
    for (const listener of this.listeners) listener(event);
  }
}
