import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { EncryptionKeyError } from '../errors/typed-errors.js';

/**
 * Encryption at rest of cache payloads: AES-256-GCM with keys from the environment.
 *
 * The variable (`encryption.keysEnv`, default `WALCACHE_ENCRYPTION_KEYS`) holds
 * `<id>:<base64 of 32 bytes>` pairs separated by commas. The first key encrypts; every
 * key decrypts, so a key rotates in three deployments: add the new key second (every
 * process can read it), move it first (new entries use it), drop the old one once the
 * longest TTL has passed.
 *
 * A sealed payload names its key: `u8 id length | id | 12-byte IV | 16-byte tag |
 * ciphertext`. The Redis key of the entry is the additional authenticated data, so an
 * entry copied to another key does not decrypt there.
 */
export const DEFAULT_KEYS_ENV = 'WALCACHE_ENCRYPTION_KEYS';

const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Why a sealed payload did not open (the reason of a `decrypt-failed` event). */
export class OpenError extends Error {}

export class Keyring {
  /** The id of the key that encrypts. */
  readonly activeId: string;
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly #activeKey: Buffer;
  readonly #activeIdBytes: Buffer;

  private constructor(keys: ReadonlyMap<string, Buffer>, activeId: string) {
    this.#keys = keys;
    this.activeId = activeId;
    this.#activeKey = keys.get(activeId) as Buffer;
    this.#activeIdBytes = Buffer.from(activeId, 'latin1');
  }

  /**
   * The keys in `env[name]`, or null when the variable is unset or empty.
   *
   * @throws {EncryptionKeyError} for a malformed value (naming the key id, never the key).
   */
  static fromEnv(name: string, env: NodeJS.ProcessEnv): Keyring | null {
    const raw = env[name]?.trim();
    if (!raw) return null;
    const keys = new Map<string, Buffer>();
    let activeId: string | undefined;
    for (const pair of raw.split(',')) {
      const colon = pair.indexOf(':');
      if (colon < 0)
        throw new EncryptionKeyError(
          name,
          'each key is `<id>:<base64 key>` (comma-separated, the first encrypts)',
        );
      const id = pair.slice(0, colon).trim();
      const material = pair.slice(colon + 1).trim();
      if (!KEY_ID.test(id))
        throw new EncryptionKeyError(
          name,
          `a key id is 1 to 64 letters, digits, "_", "." or "-" (got ${JSON.stringify(id.slice(0, 64))})`,
        );
      if (keys.has(id)) throw new EncryptionKeyError(name, `key id \`${id}\` appears twice`);
      const key = BASE64.test(material) ? Buffer.from(material, 'base64') : null;
      if (key === null || key.length === 0)
        throw new EncryptionKeyError(name, `key \`${id}\` is not base64`);
      if (key.length !== 32)
        throw new EncryptionKeyError(
          name,
          `key \`${id}\` is ${key.length} bytes: AES-256 needs 32`,
        );
      keys.set(id, key);
      activeId ??= id;
    }
    return new Keyring(keys, activeId as string);
  }

  /** Encrypts `plain` with the active key, bound to `aad` (the entry's Redis key). */
  seal(plain: Uint8Array, aad: string): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#activeKey, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const head = 1 + this.#activeIdBytes.length;
    const out = Buffer.allocUnsafe(head + IV_BYTES + TAG_BYTES + plain.length);
    out[0] = this.#activeIdBytes.length;
    this.#activeIdBytes.copy(out, 1);
    iv.copy(out, head);
    const body = cipher.update(plain);
    cipher.final();
    cipher.getAuthTag().copy(out, head + IV_BYTES);
    body.copy(out, head + IV_BYTES + TAG_BYTES);
    return out;
  }

  /** @throws {OpenError} unknown key id, truncated payload, or authentication failure. */
  open(sealed: Uint8Array, aad: string): Buffer {
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const idLength = bytes[0] ?? 0;
    const head = 1 + idLength;
    if (idLength === 0 || bytes.length < head + IV_BYTES + TAG_BYTES)
      throw new OpenError('truncated encrypted payload');
    const id = bytes.toString('latin1', 1, head);
    const key = this.#keys.get(id);
    if (key === undefined)
      throw new OpenError(`encrypted under key id \`${id}\`, which this process does not have`);
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(head, head + IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(bytes.subarray(head + IV_BYTES, head + IV_BYTES + TAG_BYTES));
    try {
      const body = decipher.update(bytes.subarray(head + IV_BYTES + TAG_BYTES));
      decipher.final();
      return body;
    } catch {
      throw new OpenError(
        `does not authenticate under key id \`${id}\` (another key, or tampered with)`,
      );
    }
  }
}
