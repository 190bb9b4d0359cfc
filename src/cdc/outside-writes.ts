import type { ResolvedConfig } from '../config/config.js';
import { entityKey } from '../keys/redis-keys.js';
import type { DecodedTransaction } from '../model/change-event.js';
import { buildEntityModels, type EntityModel } from '../model/entity-model.js';
import { parseOrdered, WRITE_BEHIND_MESSAGE_PREFIX } from '../write-behind/write-behind-order.js';
import { WriteBehindStore } from '../write-behind/write-behind-store.js';

/**
 * Finds writes made outside walcache (plain SQL, another service, `tx.db` in a repository
 * transaction) to rows that have pending write-behind writes. Such a write is not ordered
 * with them: the next flush applies the pending writes over it, in the columns they
 * patch. The worker sees every committed change of the table; walcache's own (flushes,
 * repository writes, which apply or supersede the pending writes in order) carry a
 * `walcache.wb` message naming their rows. Any other change to a write-behind entity's
 * row is looked up in the jobs Redis, and reported when the row has pending writes.
 *
 * What it cannot see: a row whose pending writes were flushed before the worker read the
 * change (the worker lagged past a flush: the flush already wrote over it); TRUNCATE and
 * changes past the transaction row cap (no row is named); whether the pending writes were
 * accepted before the outside commit or after it (a report can name a row whose pending
 * writes are the newer ones). Replays after a worker restart may report a change again.
 */
export class OutsideWriteDetector {
  readonly #config: ResolvedConfig;
  /** Write-behind entities by `schema.table`. */
  readonly #byTable: ReadonlyMap<string, readonly EntityModel[]>;
  readonly #report: (entity: string, key: string) => void;
  readonly #fail: (error: unknown) => void;
  #store: WriteBehindStore | undefined;
  #closed = false;

  /** Undefined when the config has no write-behind entity. */
  static create(
    config: ResolvedConfig,
    report: (entity: string, key: string) => void,
    fail: (error: unknown) => void,
  ): OutsideWriteDetector | undefined {
    const byTable = new Map<string, EntityModel[]>();
    for (const model of buildEntityModels(config).values()) {
      if (!model.writeBehind) continue;
      const list = byTable.get(model.table);
      if (list) list.push(model);
      else byTable.set(model.table, [model]);
    }
    return byTable.size === 0 ? undefined : new OutsideWriteDetector(config, byTable, report, fail);
  }

  private constructor(
    config: ResolvedConfig,
    byTable: ReadonlyMap<string, readonly EntityModel[]>,
    report: (entity: string, key: string) => void,
    fail: (error: unknown) => void,
  ) {
    this.#config = config;
    this.#byTable = byTable;
    this.#report = report;
    this.#fail = fail;
  }

  /** Looks at a committed transaction; the lookup in Redis runs in the background. */
  observe(tx: DecodedTransaction): void {
    if (this.#closed) return;
    let candidates: Map<string, Set<string>> | undefined;
    let ordered: Map<string, Set<string> | 'all'> | undefined;
    for (const change of tx.changes) {
      const models = this.#byTable.get(`${change.schema}.${change.table}`);
      if (models === undefined || change.op === 'T') continue;
      ordered ??= orderedRows(tx);
      for (const model of models) {
        const mine = ordered.get(model.name);
        if (mine === 'all') continue;
        for (const row of [change.oldRow, change.newRow]) {
          const key = row === null ? undefined : keyOf(model, row);
          if (key === undefined || mine?.has(key)) continue;
          candidates ??= new Map();
          const keys = candidates.get(model.name) ?? new Set<string>();
          keys.add(key);
          candidates.set(model.name, keys);
        }
      }
    }
    if (candidates !== undefined) void this.#check(candidates);
  }

  /** Stops looking; closes the connection to the jobs Redis. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#store?.close();
  }

  async #check(candidates: ReadonlyMap<string, ReadonlySet<string>>): Promise<void> {
    try {
      this.#store ??= new WriteBehindStore(this.#config);
      for (const [entity, keys] of candidates) {
        const list = [...keys];
        const pending = await this.#store.exists(entity, list);
        for (const [i, key] of list.entries()) if (pending[i]) this.#report(entity, key);
      }
    } catch (error) {
      if (!this.#closed) this.#fail(error);
    }
  }
}

/** The rows each `walcache.wb` message of the transaction names, by entity. */
function orderedRows(tx: DecodedTransaction): Map<string, Set<string> | 'all'> {
  const out = new Map<string, Set<string> | 'all'>();
  for (const message of tx.messages) {
    if (message.prefix !== WRITE_BEHIND_MESSAGE_PREFIX) continue;
    const ordered = parseOrdered(message.content);
    if (ordered === null) continue;
    const known = out.get(ordered.entity);
    if (ordered.keys === 'all' || known === 'all') out.set(ordered.entity, 'all');
    else out.set(ordered.entity, new Set([...(known ?? []), ...ordered.keys]));
  }
  return out;
}

function keyOf(model: EntityModel, row: Readonly<Record<string, unknown>>): string | undefined {
  const values = model.keyColumns.map((c) => row[c]);
  return values.some((v) => v === undefined || v === null)
    ? undefined
    : entityKey(model.name, values);
}
