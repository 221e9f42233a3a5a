// The control socket: newline-delimited JSON over a unix stream socket. The caller is
// whoever the kernel says is at the other end (SO_PEERCRED), never what it claims.
// Bad input gets an error reply; nothing a client sends can crash or stall the agent:
// lines are size-capped, handlers are synchronous and bounded, slow readers are dropped.
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { requestSchema, type ErrorCode, type Reply, type Request } from './protocol.js';

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

export type RequestHandler = (req: Request, caller: Caller) => unknown;

export interface ControlLimits {
  maxRequestBytes: number;
  maxClients: number;
}

export interface ControlServerOptions extends ControlLimits {
  path: string;
  logger: Logger;
  peerCredentials: (fd: number) => Caller;
  handle: RequestHandler;
}

export interface ControlServer {
  setLimits(limits: ControlLimits): void;
  close(): Promise<void>;
}

const IDLE_TIMEOUT_MS = 300_000;
/** requests of one connection answered per event-loop turn */
const REQUESTS_PER_TURN = 16;
/** replies a client has not read yet, at most; past this it is disconnected */
const MAX_UNREAD_REPLY_BYTES = 16 * 1024 * 1024;

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

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const { path, logger, handle, peerCredentials } = opts;
  let limits: ControlLimits = { maxRequestBytes: opts.maxRequestBytes, maxClients: opts.maxClients };
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  await claimSocketPath(path);
  const clients = new Set<Socket>();

  const serve = (socket: Socket) => {
    const send = (reply: Reply) => {
      if (socket.destroyed) return;
      socket.write(`${JSON.stringify(reply)}\n`);
      if (socket.writableLength > MAX_UNREAD_REPLY_BYTES) socket.destroy();
    };
    const fail = (code: ErrorCode, message: string, id?: string | number) =>
      send({ ...(id !== undefined ? { id } : {}), ok: false, error: { code, message } });

    if (clients.size >= limits.maxClients) {
      fail('busy', `too many control connections (max_clients = ${limits.maxClients}); try again`);
      socket.end();
      return;
    }
    let caller: Caller;
    try {
      caller = peerCredentials((socket as unknown as { _handle: { fd: number } })._handle.fd);
    } catch (e) {
      logger.error({ err: e }, 'control: cannot read the peer credentials of a client; refusing it');
      fail('internal', 'the agent could not identify you (SO_PEERCRED failed)');
      socket.end();
      return;
    }
    clients.add(socket);
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.end());
    socket.on('close', () => clients.delete(socket));
    socket.on('error', () => socket.destroy());

    const answer = (line: string) => {
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        return fail('bad_json', 'the request is not valid JSON: send one JSON object per line, e.g. {"op":"status"}');
      }
      const id = typeof raw === 'object' && raw !== null && 'id' in raw ? (raw as { id: unknown }).id : undefined;
      const echo = typeof id === 'string' || typeof id === 'number' ? id : undefined;
      const parsed = requestSchema.safeParse(raw);
      if (!parsed.success) {
        return fail('bad_request', `invalid request: ${describeIssues(parsed.error)}; ops: users, procs, flows, top, status`, echo);
      }
      try {
        send({ ...(echo !== undefined ? { id: echo } : {}), ok: true, result: handle(parsed.data, caller) });
      } catch (e) {
        if (e instanceof ControlError) return fail(e.code, e.message, echo);
        logger.error({ err: e, op: parsed.data.op }, 'control: request failed');
        return fail('internal', `the agent failed to answer ${parsed.data.op}: ${(e as Error).message}`, echo);
      }
    };

    // Complete lines wait here and are answered a few per event-loop turn, so a client
    // that pipelines thousands of requests cannot hold up the poll loop or other clients.
    const TOO_LARGE = Symbol('too large');
    const queue: (string | typeof TOO_LARGE)[] = [];
    let hangUp = false;
    let draining = false;
    const drain = () => {
      for (let n = 0; n < REQUESTS_PER_TURN && queue.length; n++) {
        const item = queue.shift()!;
        if (item === TOO_LARGE) fail('too_large', `request longer than ${limits.maxRequestBytes} bytes (control.max_request_bytes)`);
        else answer(item);
      }
      if (queue.length && !socket.destroyed) {
        setImmediate(drain);
        return;
      }
      draining = false;
      if (hangUp) socket.end();
      else socket.resume();
    };

    let buffered: Buffer[] = [];
    let bufferedBytes = 0;
    socket.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
        const piece = chunk.subarray(start, nl);
        start = nl + 1;
        if (bufferedBytes + piece.length > limits.maxRequestBytes) queue.push(TOO_LARGE);
        else {
          const line = Buffer.concat([...buffered, piece]).toString('utf8').trim();
          if (line !== '') queue.push(line);
        }
        buffered = [];
        bufferedBytes = 0;
      }
      const rest = chunk.subarray(start);
      if (bufferedBytes + rest.length > limits.maxRequestBytes) {
        // no newline within the limit: the stream cannot be re-synchronised, so hang up
        queue.push(TOO_LARGE);
        hangUp = true;
        buffered = [];
        bufferedBytes = 0;
      } else if (rest.length) {
        buffered.push(Buffer.from(rest));
        bufferedBytes += rest.length;
      }
      socket.pause();
      if (!draining) {
        draining = true;
        drain();
      }
    });
  };

  const server: Server = createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // every local user may connect; what each one sees is decided per request by uid
  chmodSync(path, 0o666);
  server.on('error', (e) => logger.error({ err: e }, 'control socket error'));
  logger.info({ path }, 'control socket listening');

  return {
    setLimits(l) {
      limits = l;
    },
    close() {
      for (const c of clients) c.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
