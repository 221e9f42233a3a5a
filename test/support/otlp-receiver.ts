// A real OTLP/HTTP receiver for tests: an HTTP server that takes exports (JSON and
// protobuf) on /v1/metrics and keeps each request's body for the test to decode.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  contentType: string;
  authorization: string | undefined;
  body: Buffer;
}

export interface Receiver {
  server: Server;
  port: number;
  requests: Received[];
  close(): Promise<void>;
}

/** `status(n)` is the HTTP status for the n-th request (0-based); 200 by default. */
export function startReceiver(port = 0, status: (n: number) => number = () => 200): Promise<Receiver> {
  const requests: Received[] = [];
  let served = 0;
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/metrics') {
        res.writeHead(404).end();
        return;
      }
      const contentType = req.headers['content-type'] ?? '';
      const code = status(served++);
      if (code !== 200) {
        res.writeHead(code, { 'content-type': 'text/plain' }).end('refused by the test');
        return;
      }
      requests.push({ contentType, authorization: req.headers.authorization, body: Buffer.concat(chunks) });
      // OTLP/HTTP: an empty ExportMetricsServiceResponse means full success
      if (contentType.includes('json')) res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      resolve({
        server,
        port: (server.address() as AddressInfo).port,
        requests,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}

