// Flow records → DuckDB column chunks, the JavaScript side of an append to the flow store
// (store.ts). 20,000 records a second: each chunk's columns are plain typed arrays in the
// memory layout of DuckDB's vectors, filled in one pass over the records and copied into
// the vectors in one call each. Per-value setItem (a validity bit, a range check, and for
// the 128-bit addresses two BigInt splits each) and one pass over the records per column
// cost ~1 µs a record more (docs/performance.md "Flow store").
import { DuckDBDataChunk, DOUBLE, INTEGER, UHUGEINT, USMALLINT, UTINYINT, type DuckDBType } from '@duckdb/node-api';
// the bindings @duckdb/node-api is built on (a dependency in the same version range, so one
// copy): node-api's vectors take one value per call; the bindings copy a whole buffer in
import duckdb from '@duckdb/node-bindings';
import { endianness } from 'node:os';
import { addressWords } from './address.js';
import type { StoredFlow } from './store.js';

/** Per record of a batch, by its index: its program (comm, exe) as an id into `programs`
 *  and its workload as one into `units`. Names and paths are kept once each, not per row:
 *  handing DuckDB three strings per row cost more than the other 16 values together
 *  (bench/query.ts). Beside the records, not written onto them: two more properties on
 *  each record grew it by a property store, an allocation per record. */
export interface RecordIds {
  program: Int32Array;
  unit: Int32Array;
}

/** DuckDB's vector size: a chunk holds at most this many rows. */
const CHUNK_ROWS = 2048;

type Values = Float64Array<ArrayBuffer> | Int32Array<ArrayBuffer> | Uint16Array<ArrayBuffer> | Uint8Array<ArrayBuffer> | Uint32Array<ArrayBuffer>;

interface Column<V extends Values> {
  type: DuckDBType;
  /** where DuckDB's own choice costs queries (see remote_addr) */
  compression?: 'uncompressed';
  /** one chunk's values, reused chunk after chunk: copied into the vector before the next
   *  chunk is filled */
  values: V;
  /** array elements per row: 4 for a 128-bit address, else 1 */
  width: 1 | 4;
}

const column = <V extends Values>(type: DuckDBType, values: V, compression?: 'uncompressed'): Column<V> => ({ type, values, width: 1, ...(compression ? { compression } : {}) });

/** A UHUGEINT column. DuckDB keeps a UHUGEINT as {lower, upper} 64-bit halves in the
 *  machine's byte order: on a little-endian machine four 32-bit words, least significant
 *  first, the order addressWords writes. */
const addresses = (compression?: 'uncompressed'): Column<Uint32Array<ArrayBuffer>> => ({ ...column(UHUGEINT, new Uint32Array(CHUNK_ROWS * 4), compression), width: 4 });

if (endianness() !== 'LE') throw new Error('the flow store writes DuckDB vectors in little-endian layout and cannot run on this big-endian machine');

const f64 = () => column(DOUBLE, new Float64Array(CHUNK_ROWS));
const i32 = () => column(INTEGER, new Int32Array(CHUNK_ROWS));
const u16 = () => column(USMALLINT, new Uint16Array(CHUNK_ROWS));
const u8 = () => column(UTINYINT, new Uint8Array(CHUNK_ROWS));

/** The flows table's columns, in its order (the keys' order). 128-bit remote addresses
 *  are stored uncompressed: bit-packed they took ~0.5 µs each to unpack (a group-by over 2
 *  million records reading remote_addr: 965 ms bit-packed, 17 ms uncompressed;
 *  bench/query.ts), at 16 bytes a record. Local addresses are few per host, mostly
 *  constant segments: left to DuckDB. */
const C = {
  start_ms: f64(),
  end_ms: f64(),
  uid: i32(),
  pid: i32(),
  program: i32(),
  protocol: u8(),
  family: u8(),
  local_addr: addresses(),
  local_port: u16(),
  remote_addr: addresses('uncompressed'),
  remote_port: u16(),
  rx_bytes: f64(),
  tx_bytes: f64(),
  rx_packets: f64(),
  tx_packets: f64(),
  rx_payload_bytes: f64(),
  tx_payload_bytes: f64(),
  // last: added to stores made before it (ALTER TABLE appends)
  unit: i32(),
};

export const COLUMNS: { name: string; type: DuckDBType; compression?: 'uncompressed' }[] = Object.entries(C).map(([name, c]) => ({ name, ...c }));
const TYPES = COLUMNS.map((c) => c.type);
const VALUES = Object.values(C);

/** The local address's words, the last one remembered: a host has few addresses, and most
 *  records in a row share one (one parse saved per record). */
const local = { text: undefined as string | undefined, words: new Uint32Array(4) };

/** An unparsable address is stored as 0. */
function putAddress(text: string, words: Uint32Array, at: number): void {
  if (!addressWords(text, words, at)) words.fill(0, at, at + 4);
}

/** Row i of the chunk from record k of the batch. */
function putRow(f: StoredFlow, ids: RecordIds, k: number, i: number): void {
  C.start_ms.values[i] = f.startMs;
  C.end_ms.values[i] = f.endMs;
  C.uid.values[i] = f.uid;
  C.pid.values[i] = f.pid;
  C.program.values[i] = ids.program[k]!;
  C.protocol.values[i] = f.protocol;
  C.family.values[i] = f.family;
  if (f.localAddress !== local.text) {
    putAddress(f.localAddress, local.words, 0);
    local.text = f.localAddress;
  }
  C.local_addr.values.set(local.words, 4 * i);
  C.local_port.values[i] = f.localPort;
  putAddress(f.remoteAddress, C.remote_addr.values, 4 * i);
  C.remote_port.values[i] = f.remotePort;
  C.rx_bytes.values[i] = f.rxBytes;
  C.tx_bytes.values[i] = f.txBytes;
  C.rx_packets.values[i] = f.rxPackets;
  C.tx_packets.values[i] = f.txPackets;
  C.rx_payload_bytes.values[i] = f.rxPayloadBytes;
  C.tx_payload_bytes.values[i] = f.txPayloadBytes;
  C.unit.values[i] = ids.unit[k]!;
  if (C.uid.values[i] !== f.uid || C.pid.values[i] !== f.pid || C.protocol.values[i] !== f.protocol || C.family.values[i] !== f.family || C.local_port.values[i] !== f.localPort || C.remote_port.values[i] !== f.remotePort) {
    // a typed array wraps what its type cannot hold: refused instead, as node-api's
    // setItem refused it, never stored as another number
    throw new Error(`flow store: a record whose uid ${f.uid}, pid ${f.pid}, protocol ${f.protocol}, family ${f.family} or ports ${f.localPort}/${f.remotePort} do not fit their columns (INTEGER, UTINYINT, USMALLINT); the batch is not written`);
  }
}

/** The records as DuckDB column chunks (bench/query.ts times this apart from DuckDB's part). */
export function dataChunks(rows: StoredFlow[], ids: RecordIds): DuckDBDataChunk[] {
  const chunks: DuckDBDataChunk[] = [];
  for (let at = 0; at < rows.length; at += CHUNK_ROWS) {
    const n = Math.min(CHUNK_ROWS, rows.length - at);
    for (let i = 0; i < n; i++) putRow(rows[at + i]!, ids, at + i, i);
    const chunk = DuckDBDataChunk.create(TYPES, n);
    VALUES.forEach(({ values, width }, c) => {
      duckdb.copy_data_to_vector(duckdb.data_chunk_get_vector(chunk.chunk, c), 0, values.buffer, values.byteOffset, n * width * values.BYTES_PER_ELEMENT);
    });
    chunks.push(chunk);
  }
  return chunks;
}
