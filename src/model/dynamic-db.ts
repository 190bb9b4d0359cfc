import type { Kysely, Transaction } from 'kysely';

/**
 * The repository's own queries name their tables at run time (from the config), so they
 * run on an untyped Kysely; rows are typed where they leave the API.
 */
// biome-ignore lint/suspicious/noExplicitAny: a Kysely whose tables are named at run time
export type DynamicDatabase = any;
export type DynamicDb = Kysely<DynamicDatabase>;
export type DynamicTransaction = Transaction<DynamicDatabase>;
