import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, SerializationError } from '../errors/typed-errors.js';

/**
 * HTTP caching of cached rows: an ETag that is the entry's version as clients see it, and
 * `Cache-Control` derived from the entity's freshness (`repo.<entity>.freshness`).
 *
 * The worker invalidates the server's cache (L1 and Redis) when a row changes; it cannot
 * reach a browser's or a CDN's. What a client caches stays until its `max-age` (plus
 * `stale-while-revalidate`) runs out, whatever happens to the row. The entity's TTL is the
 * staleness the service already accepts for that entity (the most a server entry is
 * trusted if an invalidation were lost), so `max-age` never exceeds it. Past `max-age`
 * the client revalidates with `If-None-Match`, and an unchanged row costs a 304 with no
 * body.
 */

/** How long an entity's entries are fresh and then served stale while refreshing. */
export interface Freshness {
  readonly ttlMs: number;
  readonly staleWhileRevalidateMs: number;
}

/** Options of `cacheControl`, `cacheHeaders` and `sendCached`. */
export interface CacheControlOptions {
  /**
   * `private` (the default): only the client may store the response; rows are usually
   * per-user. `public`: shared caches (proxies, CDNs) may store it too; they are not
   * invalidated by the worker either, and anyone behind them gets the stored copy.
   */
  readonly visibility?: 'private' | 'public';
  /** A `max-age` shorter than the TTL (0: revalidate every time). @default freshness.ttlMs */
  readonly maxAgeMs?: number;
}

/** The caching headers of a response carrying a cached value. */
export interface CacheHeaders {
  readonly ETag: string;
  readonly 'Cache-Control': string;
}

const ETAG_LENGTH = 27;

/**
 * A strong ETag of a value as cached: `"` + 27 base64url characters of a SHA-256 + `"`.
 * The hash covers a canonical encoding of the value (object keys sorted, every type
 * tagged: a bigint `1n`, the number `1` and the string `'1'` differ), so the same row gives
 * the same tag in every process and after every refill, and any change to a field gives
 * another. Values are what the codec caches: primitives (bigint, undefined, NaN and
 * ±Infinity included), plain objects, arrays, Date, Map (in its order), Set, Buffer and
 * typed arrays. `-0` counts as `0`, as it does in JSON.
 *
 * @throws {SerializationError} for a function, a symbol, a cycle or a class instance.
 * @example
 * res.setHeader('ETag', etag(await repo.users.findById(42)));
 */
export function etag(value: unknown): string {
  const encoder = new CanonicalEncoder();
  encoder.value(value, '$', 0);
  return `"${encoder.digest().slice(0, ETAG_LENGTH)}"`;
}

/**
 * `Cache-Control` for a cached value: `private, max-age=60, stale-while-revalidate=30`.
 * Seconds are rounded down; `stale-while-revalidate` is left out when it is under a second.
 * `max-age` is the entity's TTL unless `maxAgeMs` asks for less: clients are never told
 * to keep a row longer than the server would, since no invalidation reaches them.
 *
 * @throws {ConfigError} for a negative or non-finite duration, or `maxAgeMs` above the TTL.
 * @example
 * res.setHeader('Cache-Control', cacheControl(repo.users.freshness));
 */
export function cacheControl(freshness: Freshness, options: CacheControlOptions = {}): string {
  if (freshness === null || typeof freshness !== 'object')
    throw new ConfigError('freshness', freshness, 'expected { ttlMs, staleWhileRevalidateMs }');
  const ttlMs = duration('freshness.ttlMs', freshness.ttlMs);
  const swrMs = duration('freshness.staleWhileRevalidateMs', freshness.staleWhileRevalidateMs);
  const visibility = options.visibility ?? 'private';
  if (visibility !== 'private' && visibility !== 'public')
    throw new ConfigError('visibility', visibility, "expected 'private' or 'public'");
  let maxAgeMs = ttlMs;
  if (options.maxAgeMs !== undefined) {
    maxAgeMs = duration('maxAgeMs', options.maxAgeMs);
    if (maxAgeMs > ttlMs)
      throw new ConfigError(
        'maxAgeMs',
        maxAgeMs,
        `above the entity's TTL (${ttlMs} ms): clients are not invalidated, so they must not keep a row longer than the server does`,
      );
  }
  const swr = Math.floor(swrMs / 1000);
  return `${visibility}, max-age=${Math.floor(maxAgeMs / 1000)}${swr > 0 ? `, stale-while-revalidate=${swr}` : ''}`;
}

/**
 * Whether a request's `If-None-Match` matches `tag` (RFC 9110 §13.1.2): `*` matches any
 * current representation; otherwise a comma-separated list of entity tags, compared
 * weakly (a `W/` prefix on either side is ignored). A missing, empty or malformed header
 * matches nothing, so the full response is sent.
 *
 * @throws {ConfigError} when `tag` is not an entity tag (`"..."` or `W/"..."`).
 * @example
 * if (isNotModified(req.headers['if-none-match'], tag)) { res.statusCode = 304; res.end(); }
 */
export function isNotModified(ifNoneMatch: string | string[] | undefined, tag: string): boolean {
  const opaque = typeof tag === 'string' ? parseTagList(tag) : undefined;
  if (opaque === undefined || opaque.length !== 1 || opaque[0] === '*')
    throw new ConfigError('tag', tag, 'an entity tag: "..." or W/"..."');
  const own = opaque[0];
  if (ifNoneMatch === undefined) return false;
  const header = Array.isArray(ifNoneMatch) ? ifNoneMatch.join(',') : ifNoneMatch;
  if (typeof header !== 'string') return false;
  const tags = parseTagList(header);
  if (tags === undefined) return false;
  return tags.includes('*') || tags.includes(own as string);
}

/**
 * The `ETag` and `Cache-Control` headers of a response carrying `value`.
 *
 * @throws {ConfigError} see `cacheControl`.
 * @throws {SerializationError} see `etag`.
 * @example
 * res.writeHead(200, { ...cacheHeaders(user, repo.users.freshness), 'Content-Type': 'application/json' });
 */
export function cacheHeaders(
  value: unknown,
  freshness: Freshness,
  options?: CacheControlOptions,
): CacheHeaders {
  return { ETag: etag(value), 'Cache-Control': cacheControl(freshness, options) };
}

/**
 * Answers a node:http request with a cached value:
 * - `undefined` (not found): 404, `{ "error": "not found" }`, `Cache-Control: no-store`;
 * - a GET or HEAD whose `If-None-Match` matches: 304 with the caching headers, no body;
 * - otherwise 200, the value as JSON (`application/json; charset=utf-8`) with `ETag` and
 *   `Cache-Control` (no body for HEAD).
 *
 * JSON: bigints become strings, Buffers and byte arrays base64, Dates ISO strings, Maps
 * objects and Sets arrays. `If-None-Match` is only honoured for GET and HEAD: for another
 * method (a PUT answering with the row it wrote) it is a precondition the handler checks
 * before writing, not something to answer with 304 afterwards.
 *
 * @throws {ConfigError} see `cacheControl`.
 * @throws {SerializationError} see `etag`.
 * @example
 * sendCached(req, res, await repo.users.findById(id), repo.users.freshness);
 */
export function sendCached(
  req: IncomingMessage,
  res: ServerResponse,
  value: unknown,
  freshness: Freshness,
  options?: CacheControlOptions,
): void {
  const head = req.method === 'HEAD';
  if (value === undefined) {
    const body = JSON.stringify({ error: 'not found' });
    res.writeHead(404, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
    });
    res.end(head ? undefined : body);
    return;
  }
  const headers = cacheHeaders(value, freshness, options);
  if ((req.method === 'GET' || head) && isNotModified(req.headers['if-none-match'], headers.ETag)) {
    res.writeHead(304, { ...headers });
    res.end();
    return;
  }
  const body = toJson(value);
  res.writeHead(200, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(head ? undefined : body);
}

// --- internals -------------------------------------------------------------------

function duration(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new ConfigError(option, value, 'a finite, non-negative number of milliseconds');
  return value;
}

/**
 * The opaque tags of an `If-None-Match` value (`*` kept as `'*'`), without their `W/`:
 * undefined when it is malformed. Entity tags may contain commas, so this scans quotes.
 */
function parseTagList(header: string): string[] | undefined {
  const tags: string[] = [];
  let i = 0;
  const n = header.length;
  const skip = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t' || header[i] === ',')) i++;
  };
  skip();
  while (i < n) {
    if (header[i] === '*') {
      tags.push('*');
      i++;
    } else {
      if (header.startsWith('W/', i)) i += 2;
      if (header[i] !== '"') return undefined;
      const end = header.indexOf('"', i + 1);
      if (end < 0) return undefined;
      const opaque = header.slice(i + 1, end);
      for (let c = 0; c < opaque.length; c++) {
        const code = opaque.charCodeAt(c);
        // etagc = %x21 / %x23-7E / obs-text (%x80-FF)
        if (code < 0x21 || code === 0x7f || code > 0xff) return undefined;
      }
      tags.push(`"${opaque}"`);
      i = end + 1;
    }
    // Between tags: optional whitespace, then a comma or the end.
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
    if (i < n && header[i] !== ',') return undefined;
    skip();
  }
  return tags.length > 0 ? tags : undefined;
}

const ALLOWED_CLASSES = new Set<unknown>([Date, Map, Set, Array, Object]);
const MAX_DEPTH = 64;

/**
 * Writes a self-delimiting, type-tagged encoding of a value into a SHA-256. Injective:
 * different values (as the codec round-trips them) give different encodings.
 */
class CanonicalEncoder {
  readonly #hash = createHash('sha256');
  readonly #seen = new Set<object>();
  #buffer = '';

  digest(): string {
    this.#flush();
    return this.#hash.digest('base64url');
  }

  value(value: unknown, path: string, depth: number): void {
    switch (typeof value) {
      case 'string':
        this.#string(value);
        return;
      case 'number':
        // String() covers NaN and ±Infinity; -0 is 0 (JSON and the codec may not keep it).
        this.#buffer += `d${Object.is(value, -0) ? '0' : String(value)};`;
        return;
      case 'bigint':
        this.#buffer += `i${value.toString()};`;
        return;
      case 'boolean':
        this.#buffer += value ? 't' : 'f';
        return;
      case 'undefined':
        this.#buffer += 'u';
        return;
      case 'function':
        throw new SerializationError('(etag)', path, 'is a function');
      case 'symbol':
        throw new SerializationError('(etag)', path, 'is a symbol');
    }
    if (value === null) {
      this.#buffer += 'n';
      return;
    }
    const object = value as object;
    if (depth > MAX_DEPTH)
      throw new SerializationError('(etag)', path, `is nested deeper than ${MAX_DEPTH} levels`);
    if (ArrayBuffer.isView(object)) {
      this.#bytes(object);
      return;
    }
    const proto = Object.getPrototypeOf(object);
    if (proto !== null && !ALLOWED_CLASSES.has(proto.constructor)) {
      const name = typeof proto.constructor === 'function' ? proto.constructor.name : 'unknown';
      throw new SerializationError(
        '(etag)',
        path,
        `is an instance of ${name || 'an anonymous class'}; expected a value as cached (plain objects, arrays, Date, Map, Set, Buffer or typed arrays)`,
      );
    }
    if (object instanceof Date) {
      this.#buffer += `D${object.getTime()};`;
      return;
    }
    if (this.#seen.has(object))
      throw new SerializationError('(etag)', path, 'is a circular reference');
    this.#seen.add(object);
    if (Array.isArray(object)) {
      this.#buffer += '[';
      for (let i = 0; i < object.length; i++) this.value(object[i], `${path}[${i}]`, depth + 1);
      this.#buffer += ']';
    } else if (object instanceof Map) {
      this.#buffer += 'M';
      for (const [k, v] of object) {
        this.value(k, `${path}<key>`, depth + 1);
        this.value(
          v,
          `${path}.get(${typeof k === 'string' ? JSON.stringify(k) : String(k)})`,
          depth + 1,
        );
      }
      this.#buffer += '}';
    } else if (object instanceof Set) {
      this.#buffer += 'S';
      for (const v of object) this.value(v, `${path}<member>`, depth + 1);
      this.#buffer += ']';
    } else {
      if (Object.getOwnPropertySymbols(object).length > 0)
        throw new SerializationError('(etag)', path, 'has symbol-keyed properties');
      this.#buffer += '{';
      const record = object as Record<string, unknown>;
      for (const k of Object.keys(record).sort()) {
        this.#string(k);
        this.value(record[k], `${path}.${k}`, depth + 1);
      }
      this.#buffer += '}';
    }
    this.#seen.delete(object);
  }

  #string(s: string): void {
    this.#buffer += `s${s.length}:${s}`;
    if (this.#buffer.length > 64 * 1024) this.#flush();
  }

  /** Buffers and Uint8Arrays alike (the codec may give back either); other views by type. */
  #bytes(view: ArrayBufferView): void {
    const bytes = Buffer.from(view.buffer, view.byteOffset, view.byteLength);
    const type = view instanceof Uint8Array ? '' : view.constructor.name;
    this.#buffer += `b${type.length}:${type}${bytes.length}:`;
    this.#flush();
    this.#hash.update(bytes);
  }

  #flush(): void {
    if (this.#buffer.length === 0) return;
    // UTF-16 code units as they are: lossless, unlike UTF-8 with lone surrogates.
    this.#hash.update(this.#buffer, 'utf16le');
    this.#buffer = '';
  }
}

/** JSON of a cached value: bigint → string, bytes → base64, Map → object, Set → array. */
function toJson(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key, converted) {
    // `this[key]` is the value before its own toJSON (Buffer's would give { type, data }).
    const original = this[key];
    if (typeof original === 'bigint') return original.toString();
    if (ArrayBuffer.isView(original))
      return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString(
        'base64',
      );
    if (original instanceof Map)
      return Object.fromEntries([...original].map(([k, v]) => [String(k), v]));
    if (original instanceof Set) return [...original];
    return converted;
  });
}
