import type { Insertable, Selectable, Updateable } from 'kysely';

/**
 * Type-level plumbing: how the Kysely `Database` type and the config's entity
 * declarations become the row, id, insert and patch types of each entity repository.
 */

/** The `entities` of a config type (as given to `defineConfig`, literal types kept). */
export type EntitiesOf<C> = C extends { readonly entities: infer E } ? E : Record<never, never>;

type TableOf<E> = E extends { readonly table: infer T extends string } ? T : never;
type DenyOf<E> = E extends { readonly deny: ReadonlyArray<infer D extends string> } ? D : never;
type UniqueOf<E> = E extends { readonly unique: ReadonlyArray<infer U extends string> } ? U : never;
type KeyOf<E> = E extends { readonly key: infer K } ? K : never;

type Table<DB, T> = T extends keyof DB ? DB[T] : Record<string, unknown>;
type Row<DB, T> = T extends keyof DB ? Selectable<DB[T]> : Record<string, unknown>;
/** int8 and numeric come back as strings; their ids may be passed as numbers or bigints too. */
type IdValue<T> = T extends string ? T | number | bigint : T;
/** A composite key's values, in the order of its columns. */
type KeyTuple<R, K extends readonly string[]> = {
  -readonly [I in keyof K]: IdValue<R[K[I] & keyof R]>;
};
type Flatten<T> = { [K in keyof T]: T[K] } & {};

/** What one entity reads and writes. */
export interface EntityTypes {
  /** A row as cached and returned: the table's selectable row without the denied columns. */
  readonly row: object;
  /** `findById`'s argument: the key column's type, or a tuple for a composite key. */
  readonly id: unknown;
  readonly insert: object;
  readonly update: object;
  /** Columns `findBy` takes. */
  readonly unique: string;
}

export type EntityTypesOf<DB, E> = {
  readonly row: Flatten<Omit<Row<DB, TableOf<E>>, DenyOf<E>>>;
  readonly id: KeyOf<E> extends string
    ? IdValue<Row<DB, TableOf<E>>[KeyOf<E> & keyof Row<DB, TableOf<E>>]>
    : KeyOf<E> extends readonly string[]
      ? KeyTuple<Row<DB, TableOf<E>>, KeyOf<E>>
      : never;
  readonly insert: TableOf<E> extends keyof DB
    ? Insertable<Table<DB, TableOf<E>>>
    : Record<string, unknown>;
  readonly update: TableOf<E> extends keyof DB
    ? Updateable<Table<DB, TableOf<E>>>
    : Record<string, unknown>;
  readonly unique: UniqueOf<E>;
};
