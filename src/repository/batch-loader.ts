/**
 * Collects the loads of one `findMany` into as few SQL queries as possible.
 *
 * Every key of the call goes through the engine's `getOrLoad` (so each fill is
 * lease-protected); a key that misses calls `load`, a key that hits never does. The
 * batch knows how many keys it serves, so it runs the query once every key has either
 * been answered from the cache or asked to load: one query for all the misses. A key
 * that waits on another process's lease holds the batch back at most `quietMs` after
 * the last progress; a load asked after the batch ran (a reload, a lease lost) gets a
 * batch of its own, gathered over one macrotask.
 */
export class BatchLoader<K, V> {
  readonly #run: (ids: K[]) => Promise<Map<string, V>>;
  readonly #quietMs: number;
  readonly #waiting: Set<string>;
  #pending = new Map<
    string,
    { id: K; resolve: (v: V | undefined) => void; reject: (e: unknown) => void }[]
  >();
  #timer: NodeJS.Timeout | undefined;
  #late: NodeJS.Immediate | undefined;
  #first = true;

  /** `run` returns the found values by key; absent keys load as undefined. */
  constructor(keys: Iterable<string>, run: (ids: K[]) => Promise<Map<string, V>>, quietMs = 25) {
    this.#waiting = new Set(keys);
    this.#run = run;
    this.#quietMs = quietMs;
  }

  /** The loader of one key (pass it to `getOrLoad`). */
  load(key: string, id: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const list = this.#pending.get(key);
      if (list) list.push({ id, resolve, reject });
      else this.#pending.set(key, [{ id, resolve, reject }]);
      this.#waiting.delete(key);
      this.#progress();
    });
  }

  /** The key's read settled (answered from the cache, or loaded). */
  settled(key: string): void {
    if (this.#waiting.delete(key)) this.#progress();
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
    if (this.#timer) this.#timer.refresh();
    else if (this.#pending.size > 0) this.#timer = setTimeout(() => this.#flush(), this.#quietMs);
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#first = false;
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    const ids: K[] = [];
    for (const list of batch.values()) ids.push((list[0] as { id: K }).id);
    this.#run(ids).then(
      (found) => {
        for (const [key, list] of batch) for (const p of list) p.resolve(found.get(key));
      },
      (error: unknown) => {
        for (const list of batch.values()) for (const p of list) p.reject(error);
      },
    );
  }
}
