// The Prometheus exporter: a scrape endpoint rather than a push. It keeps no queue and no
// state of its own; each scrape reads the ledger's lifetime totals, the kernel's
// per-process and per-interface counters and the agent's health (metrics.ts).
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Exporter, ExporterStatus } from '../types.js';
import { parseListen, type PrometheusConfig } from './config.js';
import { exposition } from './exposition.js';
import { scrapeFamilies, type ScrapeSources } from './metrics.js';
import { startScrapeServer } from './server.js';

export { prometheusConfigSchema, type PrometheusConfig } from './config.js';

export interface PrometheusExporterOptions {
  logger: Logger;
  sources: ScrapeSources;
}

/** The token in `file`, which must be the agent user's alone: it guards every user's figures. */
export function readTokenFile(file: string): string {
  const st = statSync(file);
  const owner = process.geteuid?.() ?? 0;
  if (st.uid !== owner || (st.mode & 0o077) !== 0) {
    throw new Error(
      `[prometheus] bearer_token_file ${file} must be owned by uid ${owner} and readable by it alone (mode ${(st.mode & 0o777).toString(8)}): chown ${owner} ${file} && chmod 600 ${file}`,
    );
  }
  const token = readFileSync(file, 'utf8').trim();
  if (!token) throw new Error(`[prometheus] bearer_token_file ${file} is empty: put the token in it (e.g. openssl rand -hex 32 > ${file})`);
  return token;
}

export async function createPrometheusExporter(cfg: PrometheusConfig, opts: PrometheusExporterOptions): Promise<Exporter> {
  const { host, port } = parseListen(cfg.listen)!;
  const tokens = [cfg.bearer_token, cfg.bearer_token_file && readTokenFile(cfg.bearer_token_file)].filter((t) => t !== '');
  const tls = cfg.tls && {
    cert: readFileSync(cfg.tls.cert_file),
    key: readFileSync(cfg.tls.key_file),
    ...(cfg.tls.client_ca_file ? { ca: readFileSync(cfg.tls.client_ca_file) } : {}),
  };
  const server = await startScrapeServer({
    host,
    port,
    tls,
    tokens,
    // before the agent's first poll, the ledger lacks what the kernel counted since the
    // last checkpoint, and a scrape would see the counters go back
    ready: () => opts.sources.health()?.lastPollAtMs !== undefined,
    exposition: (format) => exposition(scrapeFamilies(opts.sources, cfg.top_processes), format),
    logger: opts.logger,
  });
  const url = `${tls ? 'https' : 'http'}://${cfg.listen}/metrics`;
  const guards = [...(tokens.length ? ['bearer token'] : []), ...(tls?.ca ? ['client certificate'] : [])];
  opts.logger.info({ url, auth: guards.length ? guards.join(' + ') : 'none' }, 'Prometheus scrape endpoint listening');
  if (cfg.allow_remote && guards.length === 0) {
    opts.logger.warn({ url }, 'the scrape endpoint may be reached from other hosts with neither a token nor client certificates: anyone who can connect sees every user\'s traffic');
  }

  let closed = false;
  return {
    name: 'prometheus',
    // a scrape reads the ledger and the kernel's counters: the agent's hand-overs are not needed
    usage() {},
    flowEnded() {},

    status(): ExporterStatus {
      const c = server.counts();
      return {
        name: 'prometheus',
        state: 'ok',
        detail: `serving ${url}; ${c.served} scrapes${c.lastServedMs ? `, last at ${new Date(c.lastServedMs).toISOString()}` : ''}${c.unauthorized ? `; ${c.unauthorized} refused without a valid token` : ''}`,
        queued: 0,
        dropped: 0,
        extra: { url, scrapes: c.served, unauthorized: c.unauthorized, lastScrapeMs: c.lastServedMs ?? null },
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      await server.close();
      opts.logger.info({ url }, 'Prometheus scrape endpoint closed');
    },
  };
}
