/**
 * pgoutput (the built-in plugin) -> DecodedRecord, on top of pg-logical-replication's
 * parser, which turns the binary protocol into `Pgoutput.Message` objects and converts
 * column text with the pg client's type parsers.
 */
import { type Pgoutput, PgoutputPlugin } from 'pg-logical-replication';
import { DecodeError } from '../errors/typed-errors.js';
import type {
  ChangeEvent,
  ChangeOp,
  DecodedRecord,
  LogicalMessage,
} from '../model/change-event.js';
import { normalizeLsn } from '../protocol/lsn.js';

/**
 * Plugin options for `new PgoutputPlugin(...)`. Protocol 1 is enough: walcache never asks
 * for streamed in-progress transactions, so it only sees committed ones. `messages` makes
 * the server send `pg_logical_emit_message` records (the worker's heartbeats).
 */
export function pgoutputPluginOptions(publicationNames: readonly string[]): Pgoutput.Options {
  return { protoVersion: 1, publicationNames: [...publicationNames], messages: true };
}

/**
 * A decoder for raw pgoutput messages (the bytes after the XLogData header, or one row of
 * `pg_logical_slot_get_binary_changes`). Stateful like the protocol itself: relation
 * messages are remembered for the rows that follow, so use one decoder per stream.
 * Any parse failure (garbage bytes, a row for a relation never described) becomes a
 * DecodeError.
 */
export function createPgoutputDecoder(): (bytes: Uint8Array) => DecodedRecord[] {
  const plugin = new PgoutputPlugin(pgoutputPluginOptions([]));
  return (bytes) => {
    let message: Pgoutput.Message;
    try {
      message = plugin.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (cause) {
      throw new DecodeError('pgoutput', cause instanceof Error ? cause.message : 'parse failed', {
        cause,
      });
    }
    return decodePgoutput(message);
  };
}

const utf8 = new TextDecoder();

/**
 * Maps one parsed pgoutput message to records. An array because one TRUNCATE message names
 * several tables (one `T` change each); relation, type and origin messages give one `skip`.
 * Pure: the relation a row belongs to travels on the message itself.
 * @throws DecodeError when the message is not of the expected shape.
 */
export function decodePgoutput(message: Pgoutput.Message): DecodedRecord[] {
  if (typeof message !== 'object' || message === null) fail('message is not an object');
  switch (message.tag) {
    case 'begin':
      if (typeof message.xid !== 'number') fail('begin without xid');
      return [
        {
          kind: 'begin',
          xid: message.xid,
          lsn: message.commitLsn === null ? null : lsn(message.commitLsn),
          commitTime: time(message.commitTime),
        },
      ];
    case 'commit':
      // commitEndLsn is where the commit record ends: the position to acknowledge
      // (the start, commitLsn, would make the server resend the transaction).
      if (message.commitEndLsn === null) fail('commit without end LSN');
      return [
        {
          kind: 'commit',
          xid: null,
          lsn: lsn(message.commitEndLsn),
          commitTime: time(message.commitTime),
        },
      ];
    case 'insert':
      return [change(message.relation, 'I', message.new, null, null)];
    case 'update':
      return [change(message.relation, 'U', message.new, message.key, message.old)];
    case 'delete':
      return [change(message.relation, 'D', null, message.key, message.old)];
    case 'truncate':
      if (!Array.isArray(message.relations)) fail('truncate without relations');
      return message.relations.map((r) => change(r, 'T', null, null, null));
    case 'message':
      return [{ kind: 'message', message: logicalMessage(message) }];
    case 'relation':
    case 'type':
    case 'origin':
      return [{ kind: 'skip', reason: message.tag }];
    default:
      return fail(`unknown tag ${JSON.stringify((message as { tag?: unknown }).tag)}`);
  }
}

type Tuple = Record<string, unknown> | null;

function change(
  relation: Pgoutput.MessageRelation | undefined,
  op: ChangeOp,
  newTuple: Tuple,
  keyTuple: Tuple,
  oldTuple: Tuple,
): DecodedRecord {
  if (typeof relation !== 'object' || relation === null) fail('row of an unknown relation');
  const { schema, name: table, columns, replicaIdentity, keyColumns } = relation;
  if (typeof schema !== 'string' || typeof table !== 'string' || !Array.isArray(columns)) {
    fail('relation without schema, name or columns');
  }
  if ((op === 'I' || op === 'U') && !isTuple(newTuple)) fail(`${op} without a new tuple`);
  const unchangedToast: string[] = [];
  let newRow: Record<string, unknown> | null = null;
  if (isTuple(newTuple)) {
    // The parser leaves an unchanged TOAST column ('u') undefined, unless the old full row
    // (REPLICA IDENTITY FULL) gave it the old value: then it is a real value and stays.
    const entries = Object.entries(newTuple).filter(([column, value]) => {
      if (value !== undefined) return true;
      unchangedToast.push(column);
      return false;
    });
    newRow = Object.fromEntries(entries);
  }
  const old = isTuple(oldTuple) ? oldTuple : isTuple(keyTuple) ? keyTuple : null;
  const event: ChangeEvent = {
    schema,
    table,
    op,
    newRow,
    // Copied into plain objects: the parser's tuples have a null prototype.
    oldRow: old === null ? null : Object.fromEntries(Object.entries(old)),
    // pgoutput sends an 'O' (old) tuple only under REPLICA IDENTITY FULL, else 'K' (key).
    oldRowIsFull: isTuple(oldTuple),
    unchangedToast,
    // Under DEFAULT identity the identity columns are the primary key ([] when there is
    // none, as wal2json's "pk"); under FULL every column is flagged and under INDEX they
    // are a unique index, so neither says which columns are the primary key.
    keyColumns: replicaIdentity === 'default' && Array.isArray(keyColumns) ? [...keyColumns] : null,
  };
  return { kind: 'change', event };
}

function isTuple(t: unknown): t is Record<string, unknown> {
  return typeof t === 'object' && t !== null && !Array.isArray(t);
}

function logicalMessage(m: Pgoutput.MessageMessage): LogicalMessage {
  if (typeof m.prefix !== 'string' || !(m.content instanceof Uint8Array)) {
    fail('message without prefix or content');
  }
  return {
    prefix: m.prefix,
    content: utf8.decode(m.content),
    transactional: m.transactional === true,
    lsn: m.messageLsn === null ? null : lsn(m.messageLsn),
  };
}

function lsn(value: unknown): string {
  if (typeof value !== 'string') fail('LSN is not a string');
  return normalizeLsn(value, 'pgoutput');
}

/** The parser gives microseconds since the Unix epoch as a bigint. */
function time(value: unknown): Date {
  if (typeof value !== 'bigint') fail('timestamp is not a bigint');
  return new Date(Number(value / 1000n));
}

function fail(reason: string): never {
  throw new DecodeError('pgoutput', reason);
}
