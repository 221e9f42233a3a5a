// [prometheus] section of /etc/ubia/ubia.toml: the scrape endpoint. Absent = no endpoint.
// The endpoint shows every user's figures, so it stays on loopback unless allow_remote
// says otherwise, and can ask for a bearer token and/or TLS client certificates; the TLS
// keys are named after the Prometheus exporter-toolkit's web config (cert_file, key_file,
// client_ca_file) so an admin who runs node_exporter recognises them.
import { isIP } from 'node:net';
import { z } from 'zod';
import { topProcessesSetting } from '../top-processes.js';

export const DEFAULT_LISTEN = '127.0.0.1:9781';

/** "host:port" or "[v6]:port" → its parts; undefined when it is neither. */
export function parseListen(listen: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

/** 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and "localhost": the only binds allowed without allow_remote. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

export const prometheusTlsSchema = z
  .strictObject({
    cert_file: z.string().min(1).describe('PEM file with the server certificate (chain) the endpoint presents').meta({ examples: ['/etc/ubia/prometheus-cert.pem'] }),
    key_file: z.string().min(1).describe('PEM file with the private key of cert_file').meta({ examples: ['/etc/ubia/prometheus-key.pem'] }),
    client_ca_file: z
      .string()
      .min(1)
      .optional()
      .describe('PEM file with the CA(s) client certificates must be signed by; when set, a scrape without a valid client certificate is refused in the TLS handshake (the exporter-toolkit\'s RequireAndVerifyClientCert); without it: no client certificates')
      .meta({ examples: ['/etc/ubia/prometheus-clients-ca.pem'] }),
  })
  .describe('[prometheus.tls] serve HTTPS (absent = plain HTTP)');

export const prometheusConfigSchema = z
  .strictObject({
    listen: z
      .string()
      .refine((l) => parseListen(l) !== undefined, 'listen is "address:port", e.g. "127.0.0.1:9781" or "[::1]:9781"')
      .default(DEFAULT_LISTEN)
      .describe(`address:port the scrape endpoint (/metrics) listens on; an address beyond loopback needs allow_remote = true; default ${DEFAULT_LISTEN}`),
    allow_remote: z
      .boolean()
      .default(false)
      .describe('allow a listen address other than loopback (the endpoint shows every user\'s traffic: add a token or TLS client certificates, or a firewall); default false'),
    bearer_token: z
      .string()
      .default('')
      .describe('scrapes must send "Authorization: Bearer <this>" (readable by whoever reads ubia.toml; prefer bearer_token_file); empty = none; default ""'),
    bearer_token_file: z
      .string()
      .default('')
      .describe('file whose content (trimmed) scrapes must send as a bearer token; it must be owned by root and not readable by group or others (chmod 600); with bearer_token too, either is accepted; empty = none; default ""'),
    top_processes: topProcessesSetting('with the highest rate at the last read of the process table'),
    tls: prometheusTlsSchema.optional(),
  })
  .refine((c) => c.allow_remote || isLoopback(parseListen(c.listen)?.host ?? 'localhost'), {
    message: 'listen is not a loopback address: the endpoint shows every user\'s traffic, so set allow_remote = true to serve beyond this host (with a bearer token or TLS client certificates)',
    path: ['listen'],
  })
  .describe('[prometheus] Prometheus/OpenMetrics scrape endpoint (absent = disabled)');

export type PrometheusConfig = z.output<typeof prometheusConfigSchema>;
