import { sql } from 'kysely';
import type { DynamicDb } from './types.js';

/**
 * The database's snapshot for the fill fence (`LoadOptions.snapshot`): the text of
 * `pg_current_snapshot()`, read on the repository's own connection pool, so on the server
 * its loads read. A commit visible in this snapshot is visible to every snapshot taken
 * after it, so a load sent once the answer is in sees it (docs/consistency.md).
 *
 * One query in flight per repository: a read that asks while one is running takes its
 * answer. That is safe (the answer still arrives before the asker's load is sent) and
 * keeps the cost at one small query per round trip of misses, not one per miss. A failure
 * answers undefined: the fill is then unfenced, as without a snapshot.
 */
export class SnapshotSource {
  readonly #db: DynamicDb;
  #inFlight: Promise<string | undefined> | undefined;

  constructor(db: DynamicDb) {
    this.#db = db;
  }

  readonly read = (): Promise<string | undefined> => {
    this.#inFlight ??= sql<{ snapshot: string }>`select pg_current_snapshot()::text as snapshot`
      .execute(this.#db)
      .then(
        (result) => result.rows[0]?.snapshot,
        () => undefined,
      )
      .finally(() => {
        this.#inFlight = undefined;
      });
    return this.#inFlight;
  };
}
