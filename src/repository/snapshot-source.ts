import { sql } from 'kysely';
import type { DynamicDb } from '../model/dynamic-db.js';

/**
 * The database's snapshot for the fill fence (`LoadOptions.snapshot`): the text of
 * `pg_current_snapshot()`, read on the repository's own connection pool, so on the server
 * its loads read. A commit visible in this snapshot is visible to every snapshot taken
 * after it, so a load sent once the answer is in sees it (docs/consistency.md).
 *
 * One query in flight per repository: a read that asks while one is running takes its
 * answer, and one that asks within `reuseMs` of the last answer takes that one at once.
 * Both are safe: any snapshot that arrived before a load is sent is older than the load's
 * own, so what it shows visible the load saw. An older snapshot only proves less (a fill
 * invalidated by a commit younger than it is refused, as without a fence), so `reuseMs`
 * stays well below the worker's lag from a commit to its tombstone. A failure answers
 * undefined: the fill is then unfenced, as without a snapshot.
 */
export class SnapshotSource {
  readonly #db: DynamicDb;
  readonly #reuseMs: number;
  #inFlight: Promise<string | undefined> | undefined;
  #last: { readonly snapshot: string; readonly at: number } | undefined;

  constructor(db: DynamicDb, reuseMs = 2) {
    this.#db = db;
    this.#reuseMs = reuseMs;
  }

  readonly read = (): Promise<string | undefined> => {
    const last = this.#last;
    if (last !== undefined && performance.now() - last.at <= this.#reuseMs)
      return Promise.resolve(last.snapshot);
    this.#inFlight ??= sql<{ snapshot: string }>`select pg_current_snapshot()::text as snapshot`
      .execute(this.#db)
      .then(
        (result) => {
          const snapshot = result.rows[0]?.snapshot;
          if (snapshot !== undefined) this.#last = { snapshot, at: performance.now() };
          return snapshot;
        },
        () => undefined,
      )
      .finally(() => {
        this.#inFlight = undefined;
      });
    return this.#inFlight;
  };
}
