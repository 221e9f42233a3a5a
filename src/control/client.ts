// Client side of the control socket, used by the CLI: one request, or a kept-open
// connection for `ubia top`. An agent that is not running is a distinct error.
// Root and admins go through the admin socket beside the public one (no other user's
// connections queue there); whoever cannot open it uses the public one, silently.
import { createConnection, type Socket } from 'node:net';
import { adminSocketOf, type Reply, type RequestInput } from './protocol.js';

/** No agent is listening on the socket. */
export class AgentNotRunningError extends Error {
  constructor(readonly socketPath: string, readonly code: string) {
    super(`the ubia agent is not running (nothing answers on ${socketPath}: ${code})`);
  }
}

/** The agent answered with an error reply. */
export class AgentReplyError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

const NOT_RUNNING = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);
/** the admin socket is not for this caller (EACCES), or this agent has none: the public one */
const NOT_ADMIN = new Set([...NOT_RUNNING, 'EACCES', 'EPERM']);

export interface ConnectOptions {
  /** try the admin socket beside `socketPath` first (default); false: `socketPath` only */
  preferAdmin?: boolean;
}

export interface ControlConnection {
  request<T>(req: RequestInput, timeoutMs?: number): Promise<T>;
  close(): void;
}

/** connect() gives EAGAIN while the agent's accept queue is full: retried for this long */
const BACKLOG_RETRY_MS = 2000;

/** A connected socket; a full accept queue (EAGAIN, a burst of connections) is retried. */
async function connectSocket(socketPath: string): Promise<Socket> {
  const deadline = Date.now() + BACKLOG_RETRY_MS;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(socketPath);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (NOT_RUNNING.has(code)) throw new AgentNotRunningError(socketPath, code);
      if (code !== 'EAGAIN' || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** The admin socket when this caller can open it, else the public one. */
async function connectPreferringAdmin(socketPath: string): Promise<Socket> {
  try {
    return await connectSocket(adminSocketOf(socketPath));
  } catch (e) {
    const code = e instanceof AgentNotRunningError ? e.code : (e as NodeJS.ErrnoException).code;
    if (!NOT_ADMIN.has(code ?? '')) throw e;
    return connectSocket(socketPath);
  }
}

export async function connectControl(socketPath: string, opts: ConnectOptions = {}): Promise<ControlConnection> {
  const socket = await (opts.preferAdmin === false ? connectSocket(socketPath) : connectPreferringAdmin(socketPath));
  return new Promise((resolve, reject) => {
    const waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
    let nextId = 1;
    // a reply line may be tens of MB (flows): its pieces are joined once it is complete
    let pieces: string[] = [];
    const failAll = (e: Error) => {
      for (const w of waiting.values()) w.reject(e);
      waiting.clear();
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      let start = 0;
      for (let nl = chunk.indexOf('\n'); nl !== -1; nl = chunk.indexOf('\n', start)) {
        pieces.push(chunk.slice(start, nl));
        start = nl + 1;
        const line = pieces.join('');
        pieces = [];
        let reply: Reply;
        try {
          reply = JSON.parse(line) as Reply;
        } catch {
          failAll(new Error('the agent sent a reply that is not JSON'));
          continue;
        }
        // replies to unreadable requests (too large, busy) carry no id: they answer the oldest
        const key = typeof reply.id === 'number' && waiting.has(reply.id) ? reply.id : waiting.keys().next().value;
        if (key === undefined) continue;
        const w = waiting.get(key)!;
        waiting.delete(key);
        w.resolve(reply);
      }
      if (start < chunk.length) pieces.push(chunk.slice(start));
    });
    resolve({
      request<T>(req: RequestInput, timeoutMs = 5000) {
        const id = nextId++;
        // a write to a closed socket fails silently: say so at once, not after the time-out
        if (socket.destroyed) return Promise.reject(new Error('the agent closed the connection'));
        return new Promise<T>((res, rej) => {
          const timer = setTimeout(() => {
            waiting.delete(id);
            rej(new Error(`the agent did not answer within ${timeoutMs} ms`));
          }, timeoutMs);
          waiting.set(id, {
            resolve: (r) => {
              clearTimeout(timer);
              if (r.ok) res(r.result as T);
              else rej(new AgentReplyError(r.error.code, r.error.message));
            },
            reject: (e) => {
              clearTimeout(timer);
              rej(e);
            },
          });
          socket.write(`${JSON.stringify({ ...req, id })}\n`);
        });
      },
      close: () => socket.destroy(),
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      failAll(e);
      reject(e);
    });
    socket.on('close', () => failAll(new Error('the agent closed the connection')));
  });
}

/** Does an agent answer on this socket (within timeoutMs)? */
export function agentAnswers(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return controlRequest(socketPath, { op: 'status' }, timeoutMs).then(
    () => true,
    () => false,
  );
}

/** One request on a fresh connection. */
export async function controlRequest<T>(socketPath: string, req: RequestInput, timeoutMs = 5000, opts: ConnectOptions = {}): Promise<T> {
  const conn = await connectControl(socketPath, opts);
  try {
    return await conn.request<T>(req, timeoutMs);
  } finally {
    conn.close();
  }
}
