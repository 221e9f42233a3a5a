// Client side of the control socket, used by the CLI: one request, or a kept-open
// connection for `ubia top`. An agent that is not running is a distinct error.
import { createConnection, type Socket } from 'node:net';
import type { Reply, RequestInput } from './protocol.js';

/** No agent is listening on the socket. */
export class AgentNotRunningError extends Error {
  constructor(readonly socketPath: string, cause: string) {
    super(`the ubia agent is not running (nothing answers on ${socketPath}: ${cause})`);
  }
}

/** The agent answered with an error reply. */
export class AgentReplyError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

const NOT_RUNNING = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);

export interface ControlConnection {
  request<T>(req: RequestInput, timeoutMs?: number): Promise<T>;
  close(): void;
}

export function connectControl(socketPath: string): Promise<ControlConnection> {
  return new Promise((resolve, reject) => {
    const socket: Socket = createConnection(socketPath);
    const waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
    let nextId = 1;
    let buf = '';
    const failAll = (e: Error) => {
      for (const w of waiting.values()) w.reject(e);
      waiting.clear();
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
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
    });
    socket.once('connect', () => {
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
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const err = NOT_RUNNING.has(e.code ?? '') ? new AgentNotRunningError(socketPath, e.code!) : e;
      failAll(err);
      reject(err);
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
export async function controlRequest<T>(socketPath: string, req: RequestInput, timeoutMs = 5000): Promise<T> {
  const conn = await connectControl(socketPath);
  try {
    return await conn.request<T>(req, timeoutMs);
  } finally {
    conn.close();
  }
}
