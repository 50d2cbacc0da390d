import { InitialSchema1795414043212 } from './1795414043212-initial-schema';

/** Every migration, in order. New ones are generated from the entities (see docs/manager.md). */
export const MIGRATIONS = [InitialSchema1795414043212];
