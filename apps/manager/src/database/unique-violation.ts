/**
 * PostgreSQL's unique_violation (SQLSTATE 23505), as TypeORM's QueryFailedError carries it
 * (`driverError.code`) or as the driver throws it (`code`).
 */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const cause = error as { code?: unknown; driverError?: { code?: unknown } };
  return cause.code === '23505' || cause.driverError?.code === '23505';
}

/** Runs an insert; false instead of an error when a unique key is taken. */
export async function insertedUnlessTaken(insert: () => Promise<unknown>): Promise<boolean> {
  try {
    await insert();
    return true;
  } catch (error) {
    if (isUniqueViolation(error)) return false;
    throw error;
  }
}
