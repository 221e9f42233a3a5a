// The control socket: newline-delimited JSON over a unix stream socket. The caller is
// whoever the kernel says is at the other end (SO_PEERCRED), never what it claims.
// Two sockets, one set of handlers: the public one (mode 0666) for every local user, and
// the admin one beside it (`<socket>.admin`, 0660 root:admin_group, or 0600 without
// one) that only root and admins can open. The kernel queues the connections of each in
// its own accept queue, and Node accepts a whole queue in one synchronous loop: a user
// flooding the public socket makes its loop long, never root's connection wait behind
// theirs (the public backlog is kept small, which bounds each such loop).
// Bad input gets an error reply; nothing a client sends can crash, stall or bloat the agent:
// - connections are limited per uid, and the last slots are kept for root and admins;
//   a refused connection gets its `busy` reply and is closed, whatever the client does;
// - a request line must arrive whole within request_timeout of its first byte (the first
//   one within request_timeout of connecting), and an idle connection is closed after
//   IDLE_TIMEOUT_MS;
// - replies not read yet are buffered up to max_reply_buffer_bytes per admin client, and
//   up to that much over all the connections of a non-admin uid (else max_clients_per_user
//   pipelining connections would hold that many times the bound); past it the agent stops
//   reading a client with unread replies (back-pressure) and closes it if it still does not
//   read within request_timeout;
// - requests are answered round-robin across clients, root's and admins' first, a bounded
//   amount of work per event-loop turn, so polls, accepts and other clients get their turn;
//   a non-admin uid's requests may take user_time_budget ms of the agent's time per
//   second (the rest wait unread), so no user can keep the agent busy or churn its memory;
// - long lists (flows) are written a slice per turn (StreamedResult), not built whole;
// - a handler may answer later (a Promise: flows.query runs in DuckDB off the event loop);
//   its client waits, unanswered requests in order, and the result goes out as any reply.
import { chmodSync, chownSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { countPerUid, rateLimitedLog } from './loglimit.js';
import { requestSchema, type ErrorCode, type Reply, type Request } from './protocol.js';
import type { ControlLimits } from '../core/control-limits.js';

export interface Caller {
  pid: number;
  uid: number;
  gid: number;
  /** supplementary groups at connect time (SO_PEERGROUPS) */
  groups: readonly number[];
}

/** An error the handler wants the client to see as it is (e.g. forbidden). */
export class ControlError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A result with long lists: `fields` as they are, each list serialized a slice at a time. */
export class StreamedResult {
  constructor(
    readonly fields: Record<string, unknown>,
    readonly lists: Record<string, { items: readonly unknown[]; row: (item: never) => unknown }>,
  ) {}
}

/** The result, or a Promise of it for work done off the event loop. */
export type RequestHandler = (req: Request, caller: Caller) => unknown;

export interface ControlServerOptions extends ControlLimits {
  path: string;
  /** the admin socket (adminSocketOf(path)) */
  adminPath: string;
  /** the group that may open the admin socket (control.admin_group's gid); undefined: root only */
  adminGid: () => number | undefined;
  logger: Logger;
  peerCredentials: (fd: number) => Caller;
  /** root or an admin: not held to the per-user limit, may take the reserved slots */
  isAdmin: (caller: Caller) => boolean;
  handle: RequestHandler;
}

export interface ControlServer {
  /** new limits, and control.admin_group may have changed: the admin socket's group follows */
  setLimits(limits: ControlLimits): void;
  close(): Promise<void>;
}

/** a connection with no request in progress is closed after this long (`ubia top -i` stays below) */
const IDLE_TIMEOUT_MS = 300_000;
/** requests (or slices of a streamed reply) answered per event-loop turn, across all clients */
const WORK_PER_TURN = 64;
/** ... and at most this much time per turn */
const TURN_BUDGET_MS = 20;
/** list items serialized per slice of a streamed reply */
const STREAM_SLICE = 512;
/** a refused client's `busy` reply gets this long to be sent before the socket is destroyed */
const REFUSAL_GRACE_MS = 1000;
/** `busy` replies per uid per second; a uid's connections refused past them are closed
 *  without one. Writing it (a write, a timer, a callback) doubles what a refused connection
 *  costs: a flood of thousands queued at once is accepted in one synchronous loop, which
 *  holds the event loop. */
const BUSY_REPLIES_PER_SECOND = 20;
/** pending connections the kernel queues for accept on the public socket: Node accepts a
 *  whole queue in one loop (55–165 µs a connection), so this bounds how long a flood keeps
 *  the event loop; users' connects past it get EAGAIN, which the CLI retries (client.ts) */
const LISTEN_BACKLOG = 128;
/** ... on the admin socket: only root and admins connect there */
const ADMIN_LISTEN_BACKLOG = 64;
/** lines a client may make the agent log per minute */
const CLIENT_LOG_LINES_PER_MINUTE = 10;
/** how long a uid's admin status is taken as known (a flood of connections asks it each time) */
const ADMIN_CACHE_MS = 10_000;

function describeIssues(e: { issues: { path: PropertyKey[]; message: string }[] }): string {
  return e.issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; ');
}

/** Is another process serving this socket? A dead one's socket file is removed. */
async function claimSocketPath(path: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another ubia agent is already serving ${path}: stop it first (systemctl stop ubia)`);
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** The reply line of `result`, in pieces: whole for a plain result, sliced for a StreamedResult. */
function* replyPieces(head: { id?: string | number }, result: unknown): Generator<string> {
  if (!(result instanceof StreamedResult)) {
    yield `${JSON.stringify({ ...head, ok: true, result })}\n`;
    return;
  }
  const fixed = JSON.stringify({ ...head, ok: true, result: result.fields });
  // the fixed fields' object is left open: `…,"result":{…` then `,"name":[…]` per list
  let open = fixed.slice(0, -2);
  let first = Object.keys(result.fields).length === 0;
  for (const [name, list] of Object.entries(result.lists)) {
    yield `${open}${first ? '' : ','}${JSON.stringify(name)}:[`;
    open = '';
    first = false;
    const row = list.row as (item: unknown) => unknown;
    for (let i = 0; i < list.items.length; i += STREAM_SLICE) {
      const slice = list.items.slice(i, i + STREAM_SLICE).map((item) => JSON.stringify(row(item)));
      yield `${i === 0 ? '' : ','}${slice.join(',')}`;
    }
    yield ']';
  }
  yield `${open}}}\n`;
}

/** A unix socket server on `path`; connections are not read until accepted (a refused one costs no read). */
async function listen(path: string, backlog: number, serve: (socket: Socket) => void, logger: Logger): Promise<Server> {
  const server = createServer({ pauseOnConnect: true }, serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path, backlog }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => logger.error({ err: e, path }, 'control socket error'));
  return server;
}

interface Client {
  socket: Socket;
  caller: Caller;
  admin: boolean;
  /** the request line split off next, not answered yet; TOO_LARGE marks one that was cut */
  queue: (string | typeof TOO_LARGE)[];
  /** bytes received and not split into lines yet: a line is split off when its turn comes,
   *  so a chunk of a thousand pipelined requests costs one read, not a thousand strings
   *  made at once (the client is not read meanwhile: at most one chunk past a partial line) */
  inbox: Buffer[];
  /** the rest of a reply being written */
  pieces?: Iterator<string>;
  /** after the queue is answered: the stream cannot be re-synchronised (line too long) */
  hangUp: boolean;
  /** replies past max_reply_buffer_bytes wait to be read; nothing more is answered meanwhile */
  blocked: boolean;
  /** a request line is in progress (or none has come yet): it has lineLeftMs of reading
   *  time left; time the agent is not reading (answering, throttled) does not count */
  lineOpen: boolean;
  lineLeftMs: number;
  lineTimer?: NodeJS.Timeout;
  lineTimerAt: number;
  /** the unread replies must be read by then */
  replyDeadline?: NodeJS.Timeout;
  /** its uid used up its time budget: nothing is answered until this fires */
  throttled?: NodeJS.Timeout;
  /** an async result is awaited: nothing else is answered (replies keep their order); the
   *  timer answers `timeout` at request_timeout */
  awaiting?: NodeJS.Timeout;
  /** ms an async result took off the loop, charged to the uid once its reply is written */
  owedMs: number;
}

const TOO_LARGE = Symbol('too large');

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const { path, adminPath, adminGid, logger, handle, peerCredentials, isAdmin } = opts;
  let limits: ControlLimits = { ...opts };
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  await claimSocketPath(path);
  await claimSocketPath(adminPath);
  const clientLog = rateLimitedLog(logger, CLIENT_LOG_LINES_PER_MINUTE);
  const refusedThisSecond = countPerUid(1000);
  /** every open socket, refused ones too, so that close() ends them all */
  const sockets = new Set<Socket>();
  /** the served clients of each uid */
  const byUid = new Map<number, Set<Client>>();
  let served = 0;
  /** clients with work to do, in round-robin order: admins' are served first, so no
   *  number of expensive requests from others delays root by more than one of them */
  const ready = { admins: new Set<Client>(), others: new Set<Client>() };
  const queueOf = (c: Client) => (c.admin ? ready.admins : ready.others);
  /** non-admin uids' time budgets: ms of work left (a second's worth at most; below 0 after
   *  an expensive request, which its next requests wait off) */
  const budgets = new Map<number, { leftMs: number; at: number }>();
  const budgetOf = (uid: number) => {
    const now = Date.now();
    const perSecond = limits.userTimeBudgetMs;
    if (budgets.size > 10_000) budgets.clear();
    const b = budgets.get(uid) ?? { leftMs: perSecond, at: now };
    b.leftMs = Math.min(perSecond, b.leftMs + ((now - b.at) * perSecond) / 1000);
    b.at = now;
    budgets.set(uid, b);
    return b;
  };
  /** ms until the client's uid has time again (0: now) */
  const throttle = (c: Client): number => {
    if (c.admin) return 0;
    const b = budgetOf(c.caller.uid);
    return b.leftMs > 0 ? 0 : Math.ceil(((1 - b.leftMs) * 1000) / limits.userTimeBudgetMs);
  };
  const adminCache = new Map<number, { admin: boolean; until: number }>();
  const adminOf = (caller: Caller) => {
    const now = Date.now();
    const hit = adminCache.get(caller.uid);
    if (hit && hit.until > now) return hit.admin;
    if (adminCache.size > 1000) adminCache.clear();
    const admin = isAdmin(caller);
    adminCache.set(caller.uid, { admin, until: now + ADMIN_CACHE_MS });
    return admin;
  };
  let pumping = false;
  let closing = false;

  const line = (reply: Reply) => `${JSON.stringify(reply)}\n`;
  const errorReply = (code: ErrorCode, message: string, id?: string | number): Reply => ({
    ...(id !== undefined ? { id } : {}),
    ok: false,
    error: { code, message },
  });

  /** Sends the refusal and closes the socket: at once when written, at the latest after the grace. */
  const refuse = (socket: Socket, code: ErrorCode, message: string) => {
    socket.pause();
    const timer = setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS);
    socket.once('close', () => clearTimeout(timer));
    socket.write(line(errorReply(code, message)), () => socket.destroy());
  };

  /** Why this caller may not have one more connection, or undefined. */
  const refusal = (caller: Caller, admin: boolean): string | undefined => {
    const mine = byUid.get(caller.uid)?.size ?? 0;
    if (served >= limits.maxClients) return `too many control connections (max_clients = ${limits.maxClients}); try again`;
    if (admin) return undefined;
    if (mine >= limits.maxClientsPerUser) return `you have ${mine} control connections open (max_clients_per_user = ${limits.maxClientsPerUser}); close one`;
    if (served >= limits.maxClients - limits.adminReservedClients) {
      return `too many control connections (the last ${limits.adminReservedClients} of max_clients = ${limits.maxClients} are kept for admins); try again`;
    }
    return undefined;
  };

  /** Runs the clock of the request line in progress (while the agent reads the client). */
  const armLine = (c: Client) => {
    if (!c.lineOpen || c.lineTimer) return;
    c.lineTimerAt = Date.now();
    c.lineTimer = setTimeout(() => {
      clientLog(c.caller.uid, 'info', { clientPid: c.caller.pid }, 'control: closing a client that did not send a whole request line within control.request_timeout');
      refuse(c.socket, 'timeout', `a request line must be complete within ${limits.requestTimeoutMs / 1000} s (control.request_timeout)`);
    }, Math.max(0, c.lineLeftMs));
  };
  const stopLine = (c: Client) => {
    if (!c.lineTimer) return;
    clearTimeout(c.lineTimer);
    c.lineTimer = undefined;
    c.lineLeftMs -= Date.now() - c.lineTimerAt;
  };

  const one = (reply: Reply) => [line(reply)].values();

  /** The reply of an async handler result, when it comes.
   *  Its wait does not block the event loop, so it is no turn's work and no other client
   *  waits for it. But it is the agent's work (DuckDB's threads) done for that caller:
   *  - the client gets at most one such request at a time (its next ones wait unread), so a
   *    uid has at most max_clients_per_user of them running;
   *  - a result not there within request_timeout is answered `timeout` (the late one is
   *    dropped), so a client is never left without a reply;
   *  - a non-admin uid is charged the wait against user_time_budget, after its reply is
   *    written (charging it first would hold back the very reply it waited for): its next
   *    requests wait it off, so one user cannot keep the store busy back to back. */
  const awaitResult = (c: Client, result: Promise<unknown>, head: { id?: string | number }, failed: (e: unknown) => Iterator<string>) => {
    const t0 = performance.now();
    let settled = false;
    let timedOut = false;
    const finish = (pieces: Iterator<string>) => {
      if (settled) return;
      settled = true;
      clearTimeout(c.awaiting);
      c.awaiting = undefined;
      c.pieces = pieces;
      wake(c);
    };
    c.awaiting = setTimeout(
      () => {
        timedOut = true;
        finish(one(errorReply('timeout', `no answer within ${limits.requestTimeoutMs / 1000} s (control.request_timeout): narrow the query (a shorter range, a --where filter)`, head.id)));
      },
      limits.requestTimeoutMs,
    );
    result
      .then(
        (r) => finish(replyPieces(head, r)),
        (e) => finish(failed(e)),
      )
      .finally(() => {
        if (c.admin) return;
        const waitedMs = performance.now() - t0;
        // after a timeout its reply is long written: charged at once
        if (timedOut) budgetOf(c.caller.uid).leftMs -= waitedMs;
        else c.owedMs += waitedMs;
      });
  };

  /** The reply's pieces, or undefined when the handler answers later (awaitResult). */
  const answer = (c: Client, text: string | typeof TOO_LARGE): Iterator<string> | undefined => {
    if (text === TOO_LARGE) return one(errorReply('too_large', `request longer than ${limits.maxRequestBytes} bytes (control.max_request_bytes)`));
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return one(errorReply('bad_json', 'the request is not valid JSON: send one JSON object per line, e.g. {"op":"status"}'));
    }
    const id = typeof raw === 'object' && raw !== null && 'id' in raw ? (raw as { id: unknown }).id : undefined;
    const echo = typeof id === 'string' || typeof id === 'number' ? id : undefined;
    const parsed = requestSchema.safeParse(raw);
    if (!parsed.success) {
      return one(errorReply('bad_request', `invalid request: ${describeIssues(parsed.error)}; ops: users, report, procs, flows, flows.query, top, status`, echo));
    }
    const head = echo !== undefined ? { id: echo } : {};
    const failed = (e: unknown) => {
      if (e instanceof ControlError) return one(errorReply(e.code, e.message, echo));
      clientLog(c.caller.uid, 'error', { err: e, op: parsed.data.op }, 'control: request failed');
      return one(errorReply('internal', `the agent failed to answer ${parsed.data.op}: ${(e as Error).message}`, echo));
    };
    try {
      const result = handle(parsed.data, c.caller);
      if (!(result instanceof Promise)) return replyPieces(head, result);
      awaitResult(c, result, head, failed);
      return undefined;
    } catch (e) {
      return failed(e);
    }
  };

  /** One unit of a client's work: a slice of the reply being written, or the next request. */
  const step = (c: Client) => {
    const wait = throttle(c);
    if (wait > 0) {
      c.throttled = setTimeout(() => {
        c.throttled = undefined;
        wake(c);
      }, wait);
      return;
    }
    const t0 = performance.now();
    c.pieces ??= answer(c, c.queue.shift()!);
    let owed = 0;
    const next = c.pieces?.next();
    if (next?.done) {
      c.pieces = undefined;
      owed = c.owedMs;
      c.owedMs = 0;
    } else if (next) c.socket.write(next.value);
    if (!c.admin) budgetOf(c.caller.uid).leftMs -= performance.now() - t0 + owed;
    if (c.socket.writableLength > 0 && unread(c) > limits.maxReplyBufferBytes) {
      c.blocked = true;
      c.replyDeadline = setTimeout(() => {
        clientLog(c.caller.uid, 'info', { clientPid: c.caller.pid }, 'control: closing a client that left its replies unread for control.request_timeout');
        c.socket.destroy();
      }, limits.requestTimeoutMs);
      c.socket.once('drain', () => {
        c.blocked = false;
        clearTimeout(c.replyDeadline);
        wake(c);
      });
    }
  };

  /** reply bytes not read yet: the client's own (admins), or its uid's over all its clients */
  const unread = (c: Client) => {
    if (c.admin) return c.socket.writableLength;
    let n = 0;
    for (const other of byUid.get(c.caller.uid) ?? []) n += other.socket.writableLength;
    return n;
  };

  const hasWork = (c: Client) => !c.socket.destroyed && !c.blocked && !c.throttled && !c.awaiting && (c.pieces !== undefined || hasRequest(c));

  const waiting = () => ready.admins.size + ready.others.size;
  const pump = () => {
    const stop = Date.now() + TURN_BUDGET_MS;
    for (let n = 0; n < WORK_PER_TURN && waiting() && Date.now() < stop; n++) {
      const line = ready.admins.size ? ready.admins : ready.others;
      const c: Client = line.values().next().value!;
      line.delete(c);
      step(c);
      if (hasWork(c)) line.add(c); // to the back of the line
      else idle(c);
    }
    pumping = waiting() > 0 && !closing;
    if (pumping) setImmediate(pump);
  };

  const wake = (c: Client) => {
    if (!hasWork(c)) return idle(c);
    queueOf(c).add(c);
    if (!pumping && !closing) {
      pumping = true;
      setImmediate(pump);
    }
  };

  /** Nothing to answer right now: read more, or hang up when the stream is lost. */
  const idle = (c: Client) => {
    if (c.socket.destroyed || c.blocked || c.throttled || c.awaiting || c.pieces || hasRequest(c)) return;
    if (c.hangUp) return void c.socket.end();
    if (c.inbox.length) c.lineOpen = true; // what is left is the start of a line
    c.socket.resume();
    armLine(c);
  };

  /** Splits the next line off the inbox into the queue (an empty one is dropped); false
   *  when no line is whole yet. */
  const splitLine = (c: Client): boolean => {
    let before = 0;
    for (let k = 0; k < c.inbox.length; k++) {
      const chunk = c.inbox[k]!;
      const nl = chunk.indexOf(10);
      if (nl === -1) {
        before += chunk.length;
        continue;
      }
      if (before + nl > limits.maxRequestBytes) c.queue.push(TOO_LARGE);
      else {
        const text = (k === 0 ? chunk.subarray(0, nl) : Buffer.concat([...c.inbox.slice(0, k), chunk.subarray(0, nl)])).toString('utf8').trim();
        if (text !== '') c.queue.push(text);
      }
      c.inbox = nl + 1 < chunk.length ? [chunk.subarray(nl + 1), ...c.inbox.slice(k + 1)] : c.inbox.slice(k + 1);
      c.lineOpen = false;
      c.lineLeftMs = limits.requestTimeoutMs;
      return true;
    }
    if (before > limits.maxRequestBytes) {
      // no newline within the limit: the stream cannot be re-synchronised, so hang up
      c.queue.push(TOO_LARGE);
      c.hangUp = true;
      c.inbox = [];
      return true;
    }
    return false;
  };

  /** A request is ready to answer (split off the inbox if need be). */
  const hasRequest = (c: Client): boolean => {
    while (c.queue.length === 0 && splitLine(c));
    return c.queue.length > 0;
  };

  const onData = (c: Client, chunk: Buffer) => {
    stopLine(c);
    c.inbox.push(chunk);
    // read no more until what arrived is answered: a pipelining client fills its own
    // socket buffer, not the agent's memory
    c.socket.pause();
    wake(c);
  };

  const serve = (socket: Socket, viaAdminSocket: boolean) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    if (closing) return void socket.destroy();
    let caller: Caller;
    try {
      caller = peerCredentials((socket as unknown as { _handle: { fd: number } })._handle.fd);
    } catch (e) {
      clientLog(-1, 'error', { err: e }, 'control: cannot read the peer credentials of a client; refusing it');
      return refuse(socket, 'internal', 'the agent could not identify you (SO_PEERCRED failed)');
    }
    const admin = adminOf(caller);
    // the file's mode lets only root and the admin group in; a caller whose membership the
    // kernel saw but the group database no longer lists is no admin
    if (viaAdminSocket && !admin) {
      clientLog(caller.uid, 'warn', { clientPid: caller.pid }, 'control: refused a non-admin on the admin socket');
      return refuse(socket, 'forbidden', `${adminPath} is for root and control.admin_group; use ${path}`);
    }
    const why = refusal(caller, admin);
    if (why !== undefined) {
      clientLog(caller.uid, 'warn', { clientPid: caller.pid }, `control: refused a connection: ${why}`);
      if (refusedThisSecond(caller.uid) > BUSY_REPLIES_PER_SECOND) return void socket.destroy();
      return refuse(socket, 'busy', why);
    }
    served++;
    const c: Client = {
      socket,
      caller,
      admin,
      queue: [],
      hangUp: false,
      blocked: false,
      inbox: [],
      lineOpen: true,
      lineLeftMs: limits.requestTimeoutMs,
      lineTimerAt: 0,
      owedMs: 0,
    };
    const mine = byUid.get(caller.uid) ?? new Set<Client>();
    byUid.set(caller.uid, mine.add(c));
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    // the first request is due right away (the CLI sends it on connect); later ones may
    // wait IDLE_TIMEOUT_MS (`ubia top` asks once per refresh)
    armLine(c);
    socket.on('data', (chunk: Buffer) => onData(c, chunk));
    socket.resume();
    socket.on('close', () => {
      served--;
      mine.delete(c);
      if (mine.size === 0) byUid.delete(caller.uid);
      clearTimeout(c.lineTimer);
      clearTimeout(c.replyDeadline);
      clearTimeout(c.throttled);
      clearTimeout(c.awaiting);
      queueOf(c).delete(c);
    });
  };

  // bound under the agent's umask 077 (root only) until the mode below is set
  const servers = [await listen(path, LISTEN_BACKLOG, (s) => serve(s, false), logger), await listen(adminPath, ADMIN_LISTEN_BACKLOG, (s) => serve(s, true), logger)];
  // every local user may connect; what each one sees is decided per request by uid
  chmodSync(path, 0o666);
  /** root's alone first (the group it had loses it), then the admin group's if there is one */
  const admitAdminGroup = () => {
    const gid = adminGid();
    chmodSync(adminPath, 0o600);
    chownSync(adminPath, 0, 0);
    if (gid === undefined) return;
    try {
      chownSync(adminPath, 0, gid);
      chmodSync(adminPath, 0o660);
    } catch (e) {
      // giving a file to a group root is not in takes CAP_CHOWN, which ubia.service does not grant
      logger.warn({ err: (e as Error).message, path: adminPath }, 'control: the admin socket stays root-only (no CAP_CHOWN): members of control.admin_group use the public socket, as admins');
    }
  };
  admitAdminGroup();
  logger.info({ path, adminPath }, 'control sockets listening');

  return {
    setLimits(l) {
      limits = l;
      adminCache.clear(); // admin_group may have changed
      try {
        admitAdminGroup();
      } catch (e) {
        logger.error({ err: e, path: adminPath }, 'control: cannot set the admin socket\'s mode; restart the agent to recreate it');
      }
    },
    close() {
      closing = true;
      ready.admins.clear();
      ready.others.clear();
      const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
      for (const s of sockets) s.destroy();
      return closed.then(() => undefined);
    },
  };
}
