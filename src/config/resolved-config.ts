import type { z } from 'zod';
import type { configSchema } from './schema.js';

export type Parsed = z.output<typeof configSchema>;

/** The validated, frozen configuration every walcache component reads. */
export type ResolvedConfig = DeepReadonly<
  Omit<Parsed, 'prefix' | 'databaseUrl' | 'redis'> & {
    prefix: string;
    databaseUrl: string;
    redis: Omit<Parsed['redis'], 'url'> & { url: string };
  }
>;

export type DeepReadonly<T> = {
  readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K];
};
