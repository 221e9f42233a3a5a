// The ordered, bounded record queue behind a TCP collector. Records wait in memory while
// the collector keeps up; batches that wait longer than a second (collector down or slow)
// spill to files in the spool directory, which survive an agent restart. When the size
// limit is reached the oldest batch is dropped and its records are counted as dropped.
//
// Each record gets its number at append: the collector's stream carries it as the IPFIX
// Sequence Number (RFC 7011 §3.1), continued across connections and restarts, so a
// record re-sent after a crash (the socket took it, the spool file still held it) comes
// with the number it had, and a collector can drop it. Numbers are reserved on disk a
// block ahead, so a restarted agent never re-uses one; see docs/ipfix.md.
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** Records in the order they were queued: [u16 template ID][u16 length][record]… */
export interface Batch {
  readonly id: number;
  count: number;
  /** records already delivered, and the byte offset of the first one not delivered */
  done: number;
  doneOffset: number;
  data: Buffer | null;
  bytes: number;
  createdMs: number;
  file: string | null;
  /** the number of the batch's first record (modulo 2^32) */
  seq: number;
}

export interface RecordQueue {
  append(setId: number, record: Uint8Array): void;
  /** The oldest batch with undelivered records (loaded into memory), or null. */
  next(): Batch | null;
  /** `records` more records of `batch`, ending at byte `offset`, reached the collector's socket. */
  delivered(batch: Batch, records: number, offset: number): void;
  /** Spills batches waiting for more than a second to disk, except `sending` (the batch
   *  the sender is writing, whose records are partly in the socket); call once a second. */
  maintain(nowMs: number, sending: Batch | null): void;
  /** Writes everything still queued to disk (shutdown). */
  persist(): void;
  /** the number of the oldest record not yet delivered (of the next one appended if none) */
  readonly firstUndelivered: number;
  readonly queued: number;
  readonly dropped: number;
  readonly spooledBytes: number;
}

const ENTRY_HEADER_BYTES = 4;
const SPILL_AFTER_MS = 1000;
/** <batch id>-<records>-<number of the first record>.spool */
const FILE_PATTERN = /^(\d{12})-(\d+)-(\d+)\.spool$/;
/** record numbers reserved on disk at a time (one small write per block) */
const SEQUENCE_BLOCK = 65536;

/** Calls fn for each record of `data` from byte `from`; fn gets the record's end offset. */
export function forEachEntry(data: Buffer, from: number, fn: (setId: number, record: Buffer, end: number) => void): void {
  let off = from;
  while (off + ENTRY_HEADER_BYTES <= data.length) {
    const setId = data.readUInt16BE(off);
    const len = data.readUInt16BE(off + 2);
    const end = off + ENTRY_HEADER_BYTES + len;
    if (end > data.length) throw new Error(`spool batch is truncated at byte ${off}`);
    fn(setId, data.subarray(off + ENTRY_HEADER_BYTES, end), end);
    off = end;
  }
}

export function createRecordQueue(opts: {
  dir: string;
  maxBytes: number;
  /** the template set the queued records are encoded against; old files made for other
   *  templates cannot be decoded by the collector and are dropped */
  templateSet: Buffer;
  logger: Logger;
}): RecordQueue {
  const { dir, maxBytes, logger } = opts;
  const batchBytes = Math.max(4096, Math.min(64 * 1024, Math.floor(maxBytes / 8)));
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const batches: Batch[] = [];
  let tail: Buffer[] = [];
  let tailBytes = 0;
  let tailCount = 0;
  let tailCreated = 0;
  let nextId = 0;
  let dropped = 0;
  let totalBytes = 0; // batches + tail, undelivered or not
  const sequenceFile = join(dir, 'sequence');
  // every number below the saved mark may have been sent by an earlier run
  let nextSeq = readSequenceMark();
  let reservedLeft = 0;
  let tailSeq = nextSeq;

  loadFiles();

  function readSequenceMark(): number {
    try {
      return Number(readFileSync(sequenceFile, 'utf8')) >>> 0;
    } catch {
      return 0; // first run
    }
  }

  /** the next record's number, saving a new mark a block ahead when the reserve is used up */
  function takeSeq(): number {
    if (reservedLeft === 0) {
      const mark = (nextSeq + SEQUENCE_BLOCK) >>> 0;
      writeFileSync(`${sequenceFile}.tmp`, String(mark));
      renameSync(`${sequenceFile}.tmp`, sequenceFile);
      reservedLeft = SEQUENCE_BLOCK;
    }
    reservedLeft--;
    const seq = nextSeq;
    nextSeq = (nextSeq + 1) >>> 0;
    return seq;
  }

  function loadFiles(): void {
    const layoutFile = join(dir, 'templates');
    let layoutMatches = true;
    try {
      layoutMatches = readFileSync(layoutFile).equals(opts.templateSet);
    } catch { /* first run */ }
    const names = readdirSync(dir);
    // a crash while spilling leaves a .tmp that was never renamed: its batch is still in the
    // previous file or was never acknowledged anywhere
    for (const f of names) if (f.endsWith('.spool.tmp')) unlinkSync(join(dir, f));
    const files = names.filter((f) => FILE_PATTERN.test(f)).sort();
    for (const name of files) {
      const m = FILE_PATTERN.exec(name)!;
      const file = join(dir, name);
      const count = Number(m[2]);
      if (!layoutMatches) {
        dropped += count;
        unlinkSync(file);
        continue;
      }
      const bytes = statSync(file).size;
      batches.push({ id: Number(m[1]), count, done: 0, doneOffset: 0, data: null, bytes, createdMs: Date.now(), file, seq: Number(m[3]) >>> 0 });
      totalBytes += bytes;
      nextId = Number(m[1]) + 1;
    }
    if (!layoutMatches && dropped > 0) {
      logger.warn({ dir, dropped }, 'IPFIX spool: the templates changed since these records were spooled (new config); dropped them because the collector could not decode them');
    }
    writeFileSync(layoutFile, opts.templateSet);
    if (batches.length > 0) logger.info({ dir, records: batches.reduce((n, b) => n + b.count, 0) }, 'IPFIX spool: resuming records spooled by an earlier run');
  }

  function seal(): void {
    if (tailCount === 0) return;
    const data = Buffer.concat(tail, tailBytes);
    batches.push({ id: nextId++, count: tailCount, done: 0, doneOffset: 0, data, bytes: tailBytes, createdMs: tailCreated, file: null, seq: tailSeq });
    tail = [];
    tailBytes = 0;
    tailCount = 0;
  }

  function fileName(b: Batch, remaining: number, seq: number): string {
    return join(dir, `${String(b.id).padStart(12, '0')}-${remaining}-${seq}.spool`);
  }

  /** Writes a batch's undelivered records to its file, after which the batch is just those
   *  records; false if the disk refused. */
  function writeOut(b: Batch): boolean {
    if (b.data === null) return true;
    const remaining = b.count - b.done;
    const seq = (b.seq + b.done) >>> 0;
    const file = fileName(b, remaining, seq);
    const rest = b.data.subarray(b.doneOffset);
    try {
      writeFileSync(`${file}.tmp`, rest);
      renameSync(`${file}.tmp`, file); // a crash never leaves a half-written batch behind
    } catch (err) {
      logger.error({ file, err: (err as Error).message }, 'IPFIX spool: cannot write to the spool directory; keeping the batch in memory');
      return false;
    }
    if (b.file !== null && b.file !== file) unlinkSync(b.file);
    b.file = file;
    totalBytes -= b.bytes - rest.length;
    b.bytes = rest.length;
    b.count = remaining;
    b.seq = seq;
    b.done = 0;
    b.doneOffset = 0;
    return true;
  }

  function remove(b: Batch): void {
    batches.splice(batches.indexOf(b), 1);
    totalBytes -= b.bytes;
    if (b.file !== null) {
      try { unlinkSync(b.file); } catch { /* already gone */ }
    }
  }

  function enforceLimit(): void {
    while (totalBytes > maxBytes && batches.length > 0) {
      const oldest = batches[0]!;
      const lost = oldest.count - oldest.done;
      dropped += lost;
      remove(oldest);
      logger.warn({ dir, lost, droppedTotal: dropped, maxBytes }, 'IPFIX spool full: dropped the oldest records (raise spool_max_bytes or bring the collector back)');
    }
  }

  return {
    append(setId, record) {
      const entry = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + record.length);
      entry.writeUInt16BE(setId, 0);
      entry.writeUInt16BE(record.length, 2);
      entry.set(record, ENTRY_HEADER_BYTES);
      const seq = takeSeq();
      if (tailCount === 0) {
        tailCreated = Date.now();
        tailSeq = seq;
      }
      tail.push(entry);
      tailBytes += entry.length;
      tailCount++;
      totalBytes += entry.length;
      if (tailBytes >= batchBytes) seal();
      if (totalBytes > maxBytes) {
        seal();
        enforceLimit();
      }
    },
    next() {
      if (batches.length === 0) seal();
      for (let b = batches[0]; b !== undefined; b = batches[0]) {
        if (b.data !== null) return b;
        try {
          b.data = readFileSync(b.file!);
          return b;
        } catch (err) {
          logger.error({ file: b.file, err: (err as Error).message }, 'IPFIX spool: cannot read a spooled batch; dropping it');
          dropped += b.count - b.done;
          remove(b);
        }
      }
      return null;
    },
    delivered(b, records, offset) {
      b.done += records;
      b.doneOffset = offset;
      if (b.done >= b.count && batches.includes(b)) remove(b);
    },
    maintain(nowMs, sending) {
      if (tailCount > 0 && nowMs - tailCreated >= SPILL_AFTER_MS) seal();
      for (const b of batches) {
        if (b !== sending && b.data !== null && nowMs - b.createdMs >= SPILL_AFTER_MS && writeOut(b)) b.data = null;
      }
    },
    persist() {
      seal();
      for (const b of batches) writeOut(b);
    },
    get queued() {
      return tailCount + batches.reduce((n, b) => n + b.count - b.done, 0);
    },
    get firstUndelivered() {
      const b = batches[0];
      if (b !== undefined) return (b.seq + b.done) >>> 0;
      return tailCount > 0 ? tailSeq : nextSeq;
    },
    get dropped() { return dropped; },
    get spooledBytes() { return totalBytes; },
  };
}
