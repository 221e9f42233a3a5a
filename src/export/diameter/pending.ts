// The pending-request table of one peer connection: each request sent waits here under its
// Hop-by-Hop Identifier until its answer arrives (RFC 6733 §6.2: answers are matched by
// it), its time runs out, or the connection goes; its callback is then called exactly once.
import { stampRequest, type DiameterMessage } from './codec.js';

export type AnswerResult =
  | { ok: true; answer: DiameterMessage }
  | { ok: false; reason: 'timeout' | 'disconnected' | 'malformed'; detail: string };

export interface PendingRequest {
  done: (result: AnswerResult) => void;
  sentMs: number;
  commandCode: number;
}

export interface PendingTable {
  readonly size: number;
  /** Gives `message` a Hop-by-Hop Identifier no pending request has (and the T flag when
   *  `retransmit`), and records it as sent now. */
  add(message: Buffer, retransmit: boolean, done: (result: AnswerResult) => void): void;
  /** The request an answer with this Hop-by-Hop Identifier settles, taken out of the table;
   *  undefined for an answer matching nothing (late, or not ours). */
  take(hopByHop: number): PendingRequest | undefined;
  /** Starts failing requests older than the timeout (a connection opened). */
  startTimeouts(): void;
  /** Stops that, and fails every request still waiting (the connection is gone). */
  failAll(detail: string): void;
}

export function createPendingTable(opts: { timeoutMs: number; nextHopByHop: () => number }): PendingTable {
  const pending = new Map<number, PendingRequest>();
  let sweepTimer: NodeJS.Timeout | undefined;

  function sweepTimeouts(): void {
    // Map iteration is insertion (= send) order and the timeout is the same for all
    const limit = Date.now() - opts.timeoutMs;
    for (const [hbh, p] of pending) {
      if (p.sentMs > limit) break;
      pending.delete(hbh);
      p.done({ ok: false, reason: 'timeout', detail: `no answer within ${opts.timeoutMs / 1000} s` });
    }
  }

  return {
    get size() {
      return pending.size;
    },
    add(message, retransmit, done) {
      let hbh = opts.nextHopByHop();
      while (pending.has(hbh)) hbh = opts.nextHopByHop(); // after a wrap, skip ids still in use
      stampRequest(message, hbh, retransmit);
      pending.set(hbh, { done, sentMs: Date.now(), commandCode: message.readUInt32BE(4) & 0xffffff });
    },
    take(hopByHop) {
      const p = pending.get(hopByHop);
      pending.delete(hopByHop);
      return p;
    },
    startTimeouts() {
      sweepTimer ??= setInterval(sweepTimeouts, Math.min(1000, opts.timeoutMs));
    },
    failAll(detail) {
      clearInterval(sweepTimer);
      sweepTimer = undefined;
      const all = [...pending.values()];
      pending.clear();
      for (const p of all) p.done({ ok: false, reason: 'disconnected', detail });
    },
  };
}
