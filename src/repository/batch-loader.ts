/**
 * Gathers loads of rows into as few SQL queries as possible, for two callers:
 *
 * - One `findMany` (`new BatchLoader(keys, run)`). Every key of the call goes through
 *   the engine's `getOrLoad` (so each fill is lease-protected); a key that misses calls
 *   `load`, a key that hits never does. The batch knows how many keys it serves, so it
 *   runs the query once every key has either been answered from the cache or asked to
 *   load: one query for all the misses. It waits for every key's cache read to answer,
 *   however late one shard answers (a key whose read fails loads, so the wait is bounded
 *   by Redis's command timeout). A key that waits on a load it does not run (another
 *   process's lease, a load in flight in this one: `parked`) holds the batch back at most
 *   `quietMs` after the last progress; a load asked after the batch ran (a reload, a
 *   lease lost) gets a batch of its own, gathered over one macrotask.
 * - The misses of single reads (`BatchLoader.perTick(run, maxBatch)`, one per entity and
 *   key shape of a repository): the loads asked in one turn of the event loop, i.e. until
 *   its check phase (`setImmediate`), run as one query. Concurrent reads whose L2 replies
 *   arrived together ask for their loads in the same turn, so they share a query; a
 *   lone miss waits for nothing but the rest of the turn it is in.
 *
 * A load of a key already in the open batch joins it (one id per key: ids with the same
 * canonical text are asked once). A batch holds at most `maxBatch` keys; the next one
 * sends it and opens another. `run` failing rejects every load of its batch, and only
 * those.
 */
export class BatchLoader<K, V> {
  readonly #run: (ids: K[]) => Promise<Map<string, V>>;
  readonly #quietMs: number;
  readonly #maxBatch: number;
  /** Keys neither answered from the cache nor asked to load. */
  readonly #waiting: Set<string>;
  /** Of those, the keys not yet heard of at all (not parked on another's load either). */
  readonly #unheard: Set<string>;
  #pending = new Map<
    string,
    { id: K; resolve: (v: V | undefined) => void; reject: (e: unknown) => void }[]
  >();
  #timer: NodeJS.Timeout | undefined;
  #late: NodeJS.Immediate | undefined;
  #first: boolean;

  /**
   * `run` returns the found values by key; absent keys load as undefined. Without `keys`,
   * every batch is gathered over one turn of the event loop (see `perTick`).
   */
  constructor(
    keys: Iterable<string> | undefined,
    run: (ids: K[]) => Promise<Map<string, V>>,
    options: { readonly quietMs?: number; readonly maxBatch?: number } = {},
  ) {
    this.#waiting = new Set(keys);
    this.#unheard = new Set(this.#waiting);
    this.#first = keys !== undefined;
    this.#run = run;
    this.#quietMs = options.quietMs ?? 25;
    this.#maxBatch = options.maxBatch ?? Number.POSITIVE_INFINITY;
  }

  /** A batcher of the loads asked in one turn of the event loop, at most `maxBatch` a query. */
  static perTick<K, V>(
    run: (ids: K[]) => Promise<Map<string, V>>,
    maxBatch: number,
  ): BatchLoader<K, V> {
    return new BatchLoader<K, V>(undefined, run, { maxBatch });
  }

  /** The loader of one key (pass it to `getOrLoad`). */
  load(key: string, id: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      let list = this.#pending.get(key);
      if (list === undefined) {
        if (this.#pending.size >= this.#maxBatch) this.#send();
        list = [];
        this.#pending.set(key, list);
      }
      list.push({ id, resolve, reject });
      this.#waiting.delete(key);
      this.#unheard.delete(key);
      this.#progress();
    });
  }

  /** The key's read settled (answered from the cache, or loaded). */
  settled(key: string): void {
    this.#unheard.delete(key);
    if (this.#waiting.delete(key)) this.#progress();
  }

  /**
   * The key's read waits on a load it does not run (the engine's `onWait`): it may still
   * ask to load (the other load gave up), but it holds the batch back at most `quietMs`.
   */
  parked(key: string): void {
    if (this.#unheard.delete(key)) this.#progress();
  }

  #progress(): void {
    if (!this.#first) {
      this.#late ??= setImmediate(() => {
        this.#late = undefined;
        this.#flush();
      });
      return;
    }
    if (this.#waiting.size === 0) {
      this.#flush();
      return;
    }
    // A key whose read has not answered yet will load or settle: wait for it (a shard
    // answering late would otherwise split the query, one per master on a cluster).
    if (this.#unheard.size > 0) return;
    if (this.#timer) this.#timer.refresh();
    else if (this.#pending.size > 0) this.#timer = setTimeout(() => this.#flush(), this.#quietMs);
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#first = false;
    this.#send();
  }

  /** Runs the open batch (if any) and opens a new one. */
  #send(): void {
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    const ids: K[] = [];
    for (const list of batch.values()) ids.push((list[0] as { id: K }).id);
    let running: Promise<Map<string, V>>;
    try {
      running = this.#run(ids);
    } catch (error) {
      running = Promise.reject(error);
    }
    running.then(
      (found) => {
        for (const [key, list] of batch) for (const p of list) p.resolve(found.get(key));
      },
      (error: unknown) => {
        for (const list of batch.values()) for (const p of list) p.reject(error);
      },
    );
  }
}
