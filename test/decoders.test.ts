import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createPgoutputDecoder, decodePgoutput } from '../src/cdc/pgoutput-decoder.js';
import { TransactionAssembler } from '../src/cdc/transaction-assembler.js';
import { decodeWal2json, parseWal2json, parseWal2jsonFast } from '../src/cdc/wal2json-decoder.js';
import { DecodeError } from '../src/errors/typed-errors.js';
import type { ChangeEvent, DecodedRecord, DecodedTransaction } from '../src/model/change-event.js';
import { compareLsn, normalizeLsn } from '../src/protocol/lsn.js';

// Captured from PostgreSQL 15 + wal2json 2.5 by scripts/capture-fixtures.ts.
interface Line {
  case: string;
  lsn: string;
  xid: number;
  data: string;
}
const load = (name: string): Line[] =>
  readFileSync(new URL(`fixtures/${name}`, import.meta.url), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
const wal2jsonLines = load('wal2json-v2.jsonl');
const pgoutputLines = load('pgoutput.jsonl');
const meta = JSON.parse(
  readFileSync(new URL('fixtures/capture-meta.json', import.meta.url), 'utf8'),
) as { notices: { case: string; message: string }[]; errors: { case: string; code: string }[] };

const USERS_COLUMNS = ['id', 'email', 'name', 'bio'];
type Decoded = { case: string; line: Line; record: DecodedRecord };
const decodeAll = {
  wal2json: (columnsOf?: (s: string, t: string) => string[] | undefined): Decoded[] =>
    wal2jsonLines.map((line) => ({
      case: line.case,
      line,
      record: decodeWal2json(parseWal2json(line.data), { columnsOf }),
    })),
  pgoutput: (): Decoded[] => {
    const decode = createPgoutputDecoder();
    return pgoutputLines.flatMap((line) =>
      decode(Buffer.from(line.data, 'base64')).map((record) => ({ case: line.case, line, record })),
    );
  },
};
const plugins = { wal2json: decodeAll.wal2json(), pgoutput: decodeAll.pgoutput() } as const;

function events(decoded: Decoded[], name: string): ChangeEvent[] {
  return decoded
    .filter((d) => d.case === name)
    .flatMap((d) => (d.record.kind === 'change' ? [d.record.event] : []));
}
function only(decoded: Decoded[], name: string): ChangeEvent {
  const list = events(decoded, name);
  assert.equal(list.length, 1, `${name}: one change`);
  return list[0] as ChangeEvent;
}
const isDecodeError = (e: unknown): boolean => e instanceof DecodeError && e.code === 'E_DECODE';
const TOASTED_BIO = 20_000;

for (const [plugin, decoded] of Object.entries(plugins)) {
  describe(`${plugin} decoder on captured fixtures`, () => {
    it('insert: table, op, values as a pg client returns them (int8 as string)', () => {
      const e = only(decoded, 'insert');
      assert.match(e.schema, /^walcache_fixtures_[0-9a-f]{8}$/);
      assert.equal(e.table, 'users');
      assert.equal(e.op, 'I');
      assert.deepEqual(e.newRow, { id: '1', email: 'ada@example.com', name: 'Ada', bio: null });
      assert.equal(e.oldRow, null);
      assert.deepEqual(e.keyColumns, ['id']);
      assert.deepEqual(e.unchangedToast, []);
    });

    it('update of a non-key column', () => {
      const e = only(decoded, 'update-non-key');
      assert.equal(e.op, 'U');
      assert.equal(e.newRow?.email, 'ada@example.org');
      // wal2json repeats the (unchanged) key; pgoutput sends no old tuple at all.
      assert.deepEqual(e.oldRow, plugin === 'wal2json' ? { id: '1' } : null);
      assert.equal(e.oldRowIsFull, false);
    });

    it('update of the primary key carries the old key', () => {
      const e = only(decoded, 'update-pk');
      assert.equal(e.newRow?.id, '2');
      assert.deepEqual(e.oldRow, { id: '1' });
      assert.equal(e.oldRowIsFull, false);
    });

    it('update leaving a TOASTed column unchanged: the column is absent from newRow', () => {
      assert.equal(String(only(decoded, 'insert-toast').newRow?.bio).length, TOASTED_BIO);
      const e = only(decoded, 'update-toast-unchanged');
      assert.equal(e.newRow?.name, 'Robert');
      assert.equal(Object.hasOwn(e.newRow ?? {}, 'bio'), false);
      // pgoutput names it ('u'); wal2json drops it silently (see the catalog test below).
      assert.deepEqual(e.unchangedToast, plugin === 'pgoutput' ? ['bio'] : []);
    });

    it('delete carries the old key only', () => {
      const e = only(decoded, 'delete');
      assert.equal(e.op, 'D');
      assert.equal(e.newRow, null);
      assert.deepEqual(e.oldRow, { id: '2' });
    });

    it('REPLICA IDENTITY FULL: whole old row on update and delete (old user_id)', () => {
      const ins = only(decoded, 'full-insert');
      assert.deepEqual(ins.newRow, { id: 10, user_id: 3, total: '12.50', note: 'first' });
      const up = only(decoded, 'full-update');
      assert.deepEqual(up.oldRow, { id: 10, user_id: 3, total: '12.50', note: 'first' });
      assert.equal(up.oldRowIsFull, true);
      assert.deepEqual(up.newRow, { id: 10, user_id: 4, total: '99.95', note: 'first' });
      assert.deepEqual(up.keyColumns, plugin === 'wal2json' ? ['id'] : null);
      const del = only(decoded, 'full-delete');
      assert.equal(del.op, 'D');
      assert.equal(del.oldRow?.user_id, 4);
      assert.equal(del.oldRowIsFull, true);
    });

    it('REPLICA IDENTITY FULL + unchanged TOAST: newRow is completed from the old row', () => {
      const note = only(decoded, 'full-insert-toast').newRow?.note as string;
      assert.equal(note.length, 8_000);
      const e = only(decoded, 'full-update-toast-unchanged');
      assert.equal(e.newRow?.total, '6.00');
      assert.equal(e.newRow?.note, note);
      assert.deepEqual(e.unchangedToast, []);
    });

    it('composite key: old key on key change and delete', () => {
      assert.deepEqual(only(decoded, 'composite-insert').keyColumns, ['org_id', 'user_id']);
      assert.equal(only(decoded, 'composite-update').newRow?.role, 'admin');
      const moved = only(decoded, 'composite-key-change');
      assert.deepEqual(moved.oldRow, { org_id: 1, user_id: '3' });
      assert.equal(moved.newRow?.user_id, '5');
      assert.deepEqual(only(decoded, 'composite-delete').oldRow, { org_id: 1, user_id: '5' });
    });

    it('table without a key: insert decodes, update and delete never reach the decoder', () => {
      const e = only(decoded, 'nopk-insert');
      assert.equal(e.table, 'events');
      assert.deepEqual(e.keyColumns, []);
      assert.deepEqual(e.newRow, {
        at: new Date('2026-01-02T03:04:05Z'),
        payload: { n: 1, kind: 'signup' },
      });
      assert.deepEqual(events(decoded, 'nopk-update'), []);
      assert.deepEqual(events(decoded, 'nopk-delete'), []);
    });

    it('truncate of two tables gives one T event per table', () => {
      const list = events(decoded, 'truncate');
      assert.deepEqual(
        list.map((e) => [e.op, e.table]),
        [
          ['T', 'orders'],
          ['T', 'memberships'],
        ],
      );
      for (const e of list) assert.equal(e.newRow, null);
    });

    it('logical messages, transactional or not', () => {
      const msgs = decoded.flatMap((d) => (d.record.kind === 'message' ? [d.record.message] : []));
      const [hb, nontx, inTx] = msgs;
      assert.equal(msgs.length, 3);
      assert.deepEqual([hb?.prefix, hb?.content, hb?.transactional], ['walcache', 'hb', true]);
      assert.match(nontx?.content ?? '', /^nontx-[0-9a-f]{8}$/);
      assert.equal(nontx?.transactional, false);
      assert.equal(inTx?.content, 'in-tx');
      const nontxLine = decoded.find(
        (d) => d.record.kind === 'message' && !d.record.message.transactional,
      );
      assert.equal(nontx?.lsn, nontxLine?.line.lsn);
    });

    it('int8 past 2^53 keeps every digit, old key included', () => {
      const big = events(decoded, 'multi-row').find((e) => e.newRow?.name === 'Big');
      assert.equal(big?.newRow?.id, '9007199254740993');
      assert.equal(String(only(decoded, 'delete-bigint').oldRow?.id), '9007199254740993');
    });

    it('assembles transactions: xid, commit LSN to acknowledge, commit time, content', () => {
      const asm = new TransactionAssembler({ rowCap: 1000 });
      const txs: DecodedTransaction[] = [];
      for (const d of decoded) {
        const tx = asm.push(d.record);
        if (tx !== null) txs.push(tx);
        if (d.record.kind === 'commit') {
          // The SQL interface reports a commit at its end LSN: what must be acknowledged.
          assert.equal(tx?.commitLsn, normalizeLsn(d.line.lsn));
          assert.equal(tx?.xid, d.line.xid);
        }
      }
      assert.equal(asm.inTransaction, false);
      assert.equal(asm.stats.commitsWithoutBegin, 0);
      const multi = txs.find((t) => t.changes.length === 5);
      assert.deepEqual(
        multi?.changes.map((c) => c.op),
        ['I', 'I', 'I', 'U', 'D'],
      );
      assert.deepEqual(
        multi?.messages.map((m) => m.content),
        ['in-tx'],
      );
      assert.equal(multi?.rowCount, 5);
      assert.deepEqual(multi?.collapsedTables, []);
      // wal2json sends empty transactions (the skipped no-key UPDATE/DELETE); pgoutput does not.
      const empty = txs.filter((t) => t.rowCount === 0 && t.messages.length === 0);
      assert.equal(empty.length, plugin === 'wal2json' ? 2 : 0);
    });
  });
}

describe('both plugins agree', () => {
  const assemble = (decoded: Decoded[]) => {
    const asm = new TransactionAssembler({ rowCap: 1000 });
    return new Map(
      decoded.flatMap((d) => {
        const tx = asm.push(d.record);
        return tx === null ? [] : [[tx.xid, tx] as const];
      }),
    );
  };
  it('same xids, commit LSNs and commit times; same new rows', () => {
    const w = assemble(plugins.wal2json);
    const p = assemble(plugins.pgoutput);
    assert.ok(p.size >= 20);
    for (const [xid, ptx] of p) {
      const wtx = w.get(xid);
      assert.equal(wtx?.commitLsn, ptx.commitLsn);
      assert.equal(wtx?.commitTime.getTime(), ptx.commitTime.getTime());
      assert.deepEqual(
        wtx?.changes.map((c) => c.newRow),
        ptx.changes.map((c) => c.newRow),
      );
    }
  });
  it('begin LSN is the transaction final LSN in both', () => {
    const begins = (d: Decoded[]) =>
      d.flatMap((x) => (x.record.kind === 'begin' ? [x.record.lsn] : []));
    const p = new Set(begins(plugins.pgoutput));
    for (const lsn of p) assert.ok(begins(plugins.wal2json).includes(lsn), String(lsn));
  });
  it('the capture saw what the server really does with a key-less table', () => {
    assert.deepEqual(
      meta.notices.map((n) => n.case),
      ['nopk-update', 'nopk-delete'],
      'wal2json warns and skips',
    );
    assert.deepEqual(
      meta.errors.map((e) => [e.case, e.code]),
      [['nopk-update-published', '55000']],
    );
  });
});

describe('LSNs', () => {
  it('normalise to the server form and compare numerically', () => {
    assert.equal(normalizeLsn('00000000/02237AB0'), '0/2237AB0');
    assert.equal(normalizeLsn('1a/ff'), '1A/FF');
    assert.throws(() => normalizeLsn('0/'), isDecodeError);
    assert.equal(compareLsn('0/A', '0/10'), -1);
    assert.equal(compareLsn('1/0', '0/FFFFFFFF'), 1);
    assert.equal(compareLsn('0/10', '00000000/00000010'), 0);
  });
});

describe('wal2json specifics', () => {
  it('with a column catalog, unchanged TOAST columns are named', () => {
    const decoded = decodeAll.wal2json((_s, t) => (t === 'users' ? USERS_COLUMNS : undefined));
    const e = only(decoded, 'update-toast-unchanged');
    assert.deepEqual(e.unchangedToast, ['bio']);
    assert.equal(Object.hasOwn(e.newRow ?? {}, 'bio'), false);
    assert.deepEqual(only(decoded, 'update-pk').unchangedToast, []);
  });
  it('reads commit timestamps in any UTC offset', () => {
    const at = (timestamp: string) => {
      const r = decodeWal2json({ action: 'B', xid: 1, lsn: '0/1', timestamp });
      return r.kind === 'begin' ? r.commitTime?.toISOString() : r.kind;
    };
    assert.equal(at('2026-01-01 05:30:00.5+05:30'), '2026-01-01T00:00:00.500Z');
    assert.equal(at('2025-12-31 21:00:00.123456-03'), '2026-01-01T00:00:00.123Z');
  });
  it('parseWal2json keeps number text exactly and leaves strings alone', () => {
    assert.deepEqual(
      parseWal2json('{"a":"x\\"1, 2","b":12.50,"c":[9007199254740993,-2e3],"d":true}'),
      {
        a: 'x"1, 2',
        b: '12.50',
        c: ['9007199254740993', '-2e3'],
        d: true,
      },
    );
  });
  it('a plain JSON.parse that rounded an int8 is refused, not turned into a wrong key', () => {
    const line = wal2jsonLines.find((l) => l.case === 'delete-bigint' && l.data.includes('"D"'));
    assert.throws(() => decodeWal2json(JSON.parse(line?.data ?? '')), isDecodeError);
  });
  it('malformed messages throw DecodeError', () => {
    const change = { action: 'I', schema: 's', table: 't', columns: [{ name: 'a', value: 1 }] };
    const bad: unknown[] = [
      null,
      'a string',
      42,
      [],
      {},
      { action: 'I' },
      { action: 'I', schema: 's', columns: [] },
      { ...change, columns: 'not an array' },
      { ...change, columns: [null] },
      { ...change, columns: [{ name: 'a' }] },
      { ...change, columns: [{ name: 7, value: 1 }] },
      { ...change, columns: [{ name: 'a', value: { nested: true } }] },
      { action: 'X' },
      { action: 'B', timestamp: '2026-01-01 00:00:00+00' },
      { action: 'C', xid: 1, timestamp: '2026-01-01 00:00:00+00' },
      { action: 'C', xid: 1, nextlsn: 'zz', timestamp: '2026-01-01 00:00:00+00' },
      { action: 'C', xid: 1, nextlsn: '0/1', timestamp: 'yesterday' },
      { action: 'M', transactional: 'yes', prefix: 'p', content: 'c' },
    ];
    for (const m of bad) assert.throws(() => decodeWal2json(m), isDecodeError, JSON.stringify(m));
    for (const text of ['{not json', '{"a":-}', '{"a":1.}', '']) {
      assert.throws(() => parseWal2json(text), isDecodeError, text);
    }
  });
});

describe('pgoutput malformed input', () => {
  it('garbage bytes throw DecodeError and leave the decoder usable', () => {
    const decode = createPgoutputDecoder();
    const garbage = [
      Buffer.alloc(0),
      Buffer.from([0xff]),
      Buffer.from('I\0\0\0\x07N', 'latin1'), // row of a relation never described
      Buffer.from('B\0\0', 'latin1'), // truncated begin
      Buffer.from('R\0\0\0\x01s\0t\0z\0\0', 'latin1'), // bad replica identity
    ];
    let seed = 42;
    const nextByte = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 24;
    };
    for (let i = 0; i < 2000; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + (i % 40) }, nextByte));
      // Half start with a real tag, so the parser gets past the first byte.
      if (i % 2 === 0) bytes[0] = 'BCIUDTRMYO'.charCodeAt((i / 2) % 10);
      garbage.push(bytes);
    }
    let thrown = 0;
    for (const bytes of garbage.slice(0, 5)) assert.throws(() => decode(bytes), isDecodeError);
    for (const bytes of garbage) {
      try {
        decode(bytes);
      } catch (e) {
        assert.ok(isDecodeError(e), String(e));
        thrown++;
      }
    }
    assert.ok(thrown > 1000, `${thrown} of ${garbage.length} refused`);
    const clean = pgoutputLines.flatMap((l) => decode(Buffer.from(l.data, 'base64')));
    assert.deepEqual(
      clean,
      plugins.pgoutput.map((d) => d.record),
    );
  });
  it('malformed message objects throw DecodeError', () => {
    const bad = [
      null,
      'x',
      { tag: 'nope' },
      { tag: 'insert', new: {} },
      { tag: 'commit', commitEndLsn: null },
      { tag: 'truncate', relations: [undefined] },
    ];
    for (const m of bad)
      assert.throws(() => decodePgoutput(m as never), isDecodeError, JSON.stringify(m));
  });
});

describe('TransactionAssembler', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const ev = (table: string, id: number): DecodedRecord => ({
    kind: 'change',
    event: {
      schema: 's',
      table,
      op: 'U',
      newRow: { id },
      oldRow: null,
      oldRowIsFull: false,
      unchangedToast: [],
      keyColumns: ['id'],
    },
  });
  const begin = (xid: number): DecodedRecord => ({
    kind: 'begin',
    xid,
    lsn: null,
    commitTime: null,
  });
  const commit = (lsn: string, xid: number | null = null): DecodedRecord => ({
    kind: 'commit',
    xid,
    lsn,
    commitTime: t0,
  });
  const msg = (content: string, transactional: boolean): DecodedRecord => ({
    kind: 'message',
    message: { prefix: 'walcache', content, transactional, lsn: null },
  });

  it('collapses a huge transaction past the row cap, memory stays flat', () => {
    const asm = new TransactionAssembler({ rowCap: 100 });
    assert.equal(asm.push(begin(7)), null);
    const tables = ['a', 'b', 'c'];
    for (let i = 0; i < 10_000; i++) assert.equal(asm.push(ev(tables[i % 3] as string, i)), null);
    const tx = asm.push(commit('0/10'));
    assert.equal(tx?.xid, 7);
    assert.equal(tx?.rowCount, 10_000);
    assert.equal(tx?.changes.length, 100);
    assert.deepEqual(tx?.changes.map((c) => c.newRow?.id).slice(0, 3), [0, 1, 2]);
    assert.deepEqual([...(tx?.collapsedTables ?? [])].sort(), ['s.a', 's.b', 's.c']);
    assert.equal(asm.stats.collapsedTransactions, 1);
  });

  it('collapsedTables names only the tables of the rows past the cap; the next transaction starts clean', () => {
    const asm = new TransactionAssembler({ rowCap: 100 });
    asm.push(begin(1));
    for (let i = 0; i < 10_000; i++) asm.push(ev(i < 100 ? 'kept' : 'bulk', i));
    const tx = asm.push(commit('0/20'));
    assert.equal(tx?.changes.length, 100);
    assert.equal(tx?.changes.filter((c) => c.table !== 'kept').length, 0);
    assert.deepEqual(tx?.collapsedTables, ['s.bulk']);
    asm.push(begin(2));
    asm.push(ev('x', 1));
    const next = asm.push(commit('0/30'));
    assert.deepEqual([next?.xid, next?.rowCount, next?.collapsedTables], [2, 1, []]);
  });

  it('odd streams never throw and never lose a change', () => {
    const seen: string[] = [];
    const asm = new TransactionAssembler({ rowCap: 10, onMessage: (m) => seen.push(m.content) });
    const stray = asm.push(commit('0/1', 99)); // commit without begin
    assert.deepEqual([stray?.xid, stray?.commitLsn, stray?.changes.length], [99, '0/1', 0]);
    assert.equal(asm.push(msg('nontx', false)), null);
    assert.deepEqual(seen, ['nontx']);
    asm.push(ev('orphan', 1)); // change without begin opens an implicit transaction
    asm.push(begin(5));
    asm.push(ev('t', 2));
    asm.push(begin(6)); // begin inside begin: carried on
    asm.push(msg('hb', true));
    const tx = asm.push(commit('0/2'));
    assert.equal(tx?.xid, 6);
    assert.deepEqual(
      tx?.changes.map((c) => c.table),
      ['orphan', 't'],
    );
    assert.deepEqual(
      tx?.messages.map((m) => m.content),
      ['hb'],
    );
    assert.equal(asm.push({ kind: 'skip', reason: 'relation' }), null);
    assert.deepEqual(
      [
        asm.stats.commitsWithoutBegin,
        asm.stats.recordsOutsideTransaction,
        asm.stats.unterminatedTransactions,
        asm.stats.skipped,
      ],
      [1, 1, 1, 1],
    );
    asm.push(begin(8));
    asm.push(ev('lost-on-reconnect', 1));
    asm.reset();
    assert.equal(asm.inTransaction, false);
    assert.deepEqual(asm.push(commit('0/3'))?.changes, []);
    assert.throws(() => new TransactionAssembler({ rowCap: 0 }), RangeError);
  });
});

describe('parseWal2jsonFast', () => {
  it('decodes every captured message exactly as the exact parser does', () => {
    for (const line of wal2jsonLines) {
      assert.deepEqual(
        decodeWal2json(parseWal2jsonFast(line.data)),
        decodeWal2json(parseWal2json(line.data)),
        line.case,
      );
    }
  });

  it('falls back to the exact parser when JSON.parse would round or reshape a value', () => {
    const msg = (value: string, typeoid: number) =>
      `{"action":"I","schema":"s","table":"t","columns":[{"name":"id","type":"x","typeoid":${typeoid},"value":${value}}],"pk":[{"name":"id","type":"x","typeoid":${typeoid}}]}`;
    const big = parseWal2jsonFast(msg('9007199254740993', 20)) as {
      columns: Array<{ value: unknown }>;
    };
    assert.equal(big.columns[0]?.value, '9007199254740993', 'int8 past 2^53 kept exact');
    const numeric = parseWal2jsonFast(msg('12.50', 1700)) as { columns: Array<{ value: unknown }> };
    assert.equal(numeric.columns[0]?.value, '12.50', 'numeric keeps its text');
    const small = parseWal2jsonFast(msg('42', 23)) as { columns: Array<{ value: unknown }> };
    assert.equal(small.columns[0]?.value, 42, 'plain int4 takes the fast path');
    assert.throws(() => parseWal2jsonFast('{not json'), isDecodeError);
  });
});

describe('decodeWal2json columnsWanted', () => {
  it('decodes only the wanted columns, and none for a table that wants none', () => {
    const insert = wal2jsonLines.find(
      (l) => l.case === 'insert' && l.data.includes('"action":"I"'),
    );
    assert.ok(insert);
    const change = (data: string, wanted: ReadonlySet<string>): ChangeEvent => {
      const r = decodeWal2json(parseWal2json(data), { columnsWanted: () => wanted });
      assert.equal(r.kind, 'change');
      return (r as { event: ChangeEvent }).event;
    };
    assert.deepEqual(change(insert.data, new Set(['id'])).newRow, { id: '1' });
    const none = change(insert.data, new Set());
    assert.deepEqual(none.newRow, {});
    assert.equal(none.table, 'users', 'the table is still named (unknown tables are counted)');
    const pkChange = wal2jsonLines.find(
      (l) => l.case === 'update-pk' && l.data.includes('"action":"U"'),
    );
    assert.ok(pkChange);
    const moved = change(pkChange.data, new Set(['id']));
    assert.deepEqual(Object.keys(moved.oldRow ?? {}), ['id'], 'the old key survives the filter');
    assert.deepEqual(Object.keys(moved.newRow ?? {}), ['id']);
    assert.notEqual(moved.oldRow?.id, moved.newRow?.id);
  });
});
