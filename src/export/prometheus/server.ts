// The scrape endpoint: GET /metrics over HTTP or HTTPS, with an optional bearer token
// (RFC 6750) and optional TLS client certificates. The exposition is made per scrape from
// the agent's current figures; nothing is cached between scrapes.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Logger } from 'pino';
import { CONTENT_TYPE, negotiate, type Format } from './exposition.js';

const gzipAsync = promisify(gzip);

export interface ScrapeServerOptions {
  host: string;
  port: number;
  /** PEM; with `ca`, clients must present a certificate it signed */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
  /** accepted bearer tokens; empty = no token needed */
  tokens: string[];
  /** false until the figures are complete (the agent's first poll): scrapes get 503 */
  ready(): boolean;
  exposition(format: Format): string;
  logger: Logger;
}

export interface ScrapeCounts {
  served: number;
  /** refused for a missing or wrong token */
  unauthorized: number;
  lastServedMs: number | undefined;
}

export interface ScrapeServer {
  address: AddressInfo;
  counts(): ScrapeCounts;
  close(): Promise<void>;
}

/** Scrapers keep one connection each; more than this at once is not a scraper. */
const MAX_CONNECTIONS = 64;

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Compares digests, so neither the token's length nor its content leaks through timing. */
function tokenMatcher(tokens: string[]): (header: string | undefined) => boolean {
  const wanted = tokens.map(digest);
  return (header) => {
    const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
    if (!m) return false;
    const got = digest(m[1]!);
    return wanted.some((w) => timingSafeEqual(w, got));
  };
}

function reply(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(`${text}\n`);
}

export async function startScrapeServer(opts: ScrapeServerOptions): Promise<ScrapeServer> {
  const authorized = opts.tokens.length ? tokenMatcher(opts.tokens) : () => true;
  const counts: ScrapeCounts = { served: 0, unauthorized: 0, lastServedMs: undefined };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') return reply(res, 404, 'ubia serves its metrics at /metrics');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'use GET', { allow: 'GET, HEAD' });
    if (!authorized(req.headers.authorization)) {
      counts.unauthorized++;
      // RFC 6750 §3: the challenge; §3.1: invalid_token when one was sent
      const challenge = req.headers.authorization ? 'Bearer realm="ubia", error="invalid_token"' : 'Bearer realm="ubia"';
      return reply(res, 401, 'a bearer token is required: Authorization: Bearer <token>', { 'www-authenticate': challenge });
    }
    if (!opts.ready()) return reply(res, 503, 'the agent is starting: its first read of the kernel counters is not done', { 'retry-after': '1' });
    const format = negotiate(req.headers.accept);
    let body = Buffer.from(opts.exposition(format));
    const headers: Record<string, string> = { 'content-type': CONTENT_TYPE[format] };
    if (/\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
      body = await gzipAsync(body);
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : body);
    counts.served++;
    counts.lastServedMs = Date.now();
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      opts.logger.error({ err }, 'a scrape failed');
      if (!res.headersSent) reply(res, 500, 'the exposition could not be made; see the agent log');
    });
  };

  const tls = opts.tls;
  const server: Server = tls
    ? createHttpsServer(
        // the exporter-toolkit's defaults: TLS 1.2 at least; with a client CA,
        // RequireAndVerifyClientCert (the handshake fails without a valid certificate)
        { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', ...(tls.ca ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}) },
        onRequest,
      )
    : createHttpServer(onRequest);
  server.maxConnections = MAX_CONNECTIONS;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `[prometheus] cannot listen on ${opts.host}:${opts.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use; choose another listen address' : err.message}`,
        ),
      ),
    );
    server.listen(opts.port, opts.host, () => resolve());
  });
  server.on('error', (err) => opts.logger.error({ err }, 'scrape endpoint error'));

  return {
    address: server.address() as AddressInfo,
    counts: () => ({ ...counts }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
