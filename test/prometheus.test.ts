// The Prometheus endpoint of the real agent, scraped by Debian's real `prometheus` (its
// own config, data dir and port, scrape interval 1 s; never the packaged service) while
// two test users make known traffic: PromQL through the HTTP API ranks them, the
// increase of their counters agrees with `ubia users`, a kill -9 of the agent shows no
// counter reset, and `promtool check metrics` accepts the exposition. Then the guards:
// a listen beyond loopback refused, the bearer token and TLS client certificates enforced
// (for Node's client and for Prometheus itself).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { UsersResult } from '../src/control/protocol.js';
import { CLI, cli, startAgent, writeAgentConfig } from './support/agent.js';
import { createTestbed, freePort, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// ---------- a real Prometheus of the test's own ----------

interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

interface Prometheus {
  port: number;
  /** an instant query through the HTTP API, at `time` (Unix seconds) or now */
  query(q: string, time?: number): Promise<PromSample[]>;
  /** a range-vector selector's raw samples */
  samples(selector: string): Promise<Array<{ metric: Record<string, string>; values: Array<[number, string]> }>>;
  logs(): string;
}

/** Starts /usr/bin/prometheus with `scrapeConfigs` (YAML list items), scraping every second. */
async function startPrometheus(dir: string, scrapeConfigs: string): Promise<Prometheus> {
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n${scrapeConfigs}`);
  const check = spawnSync('promtool', ['check', 'config', config], { encoding: 'utf8' });
  expect(check.status, check.stdout + check.stderr).toBe(0);
  mkdirSync(join(dir, 'prometheus-data'));
  const proc: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'prometheus-data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => proc.on('exit', r));
  cleanups.push(async () => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    await exited;
  });
  const api = `http://127.0.0.1:${port}`;
  await waitFor('prometheus to be ready', async () => {
    if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${out}`);
    return (await fetch(`${api}/-/ready`)).ok || undefined;
  }, 30_000);
  const get = async <T>(q: string, time?: number): Promise<T> => {
    const params = new URLSearchParams({ query: q, ...(time === undefined ? {} : { time: String(time) }) });
    const res = (await (await fetch(`${api}/api/v1/query?${params}`)).json()) as { status: string; data: { result: T }; error?: string };
    if (res.status !== 'success') throw new Error(`${q}: ${res.error}`);
    return res.data.result;
  };
  return { port, query: (q, time) => get(q, time), samples: (selector) => get(selector), logs: () => out };
}

const job = (name: string, target: string, extra = '') =>
  `  - job_name: ${name}\n    static_configs:\n      - targets: ['${target}']\n${extra}`;

// ---------- the users' traffic, the ledger, the scrape ----------

const num = (s: PromSample | undefined) => Number(s?.value[1]);

describe('Prometheus endpoint scraped by a real Prometheus', () => {
  it('ranks the test users with topk, agrees with `ubia users`, and shows no counter reset across a kill -9 of the agent', async () => {
    const bed = await createTestbed('prom', { users: 2, sinkPort: 9000 });
    cleanups.push(() => bed.remove());
    const { dir, pinDir, net, sink } = bed;
    const [alice, bob] = bed.users as [TestUser, TestUser];
    const endpoint = await freePort();
    const setup = { dir, pinDir, extra: `\n[prometheus]\nlisten = "127.0.0.1:${endpoint}"\ntop_processes = 100\n` };
    let agent = await startAgent(setup);
    cleanups.push(() => agent.stop());
    const prom = await startPrometheus(dir, job('ubia', `127.0.0.1:${endpoint}`));
    await waitFor('a successful scrape', async () => (num((await prom.query('up{job="ubia"}'))[0]) === 1 ? true : undefined), 20_000);

    // known traffic over the veth, spread over 4 s (≈4 scrapes): alice moves more than bob
    const send = { [alice.name]: 12_000_000, [bob.name]: 3_000_000 };
    const reply = { [alice.name]: 1_000_000, [bob.name]: 2_000_000 };
    await Promise.all([
      sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: send[alice.name]!, reply: reply[alice.name]!, ms: 4000 }),
      sinkTraffic(bob, { host: net.peerV6, port: sink.port, send: send[bob.name]!, reply: reply[bob.name]!, ms: 4000 }),
    ]);
    const ledger = () => {
      const res = JSON.parse(cli(agent.socket, ['users', '--since', '1h', '--json']).stdout) as UsersResult;
      return new Map(res.users.filter((u) => u.uid === alice.uid || u.uid === bob.uid).map((u) => [u.user, u]));
    };
    // the client sends an 8-byte header before its payload (sink_client in test/support/traffic.py)
    await waitFor('the ledger to book both users\' payload', () =>
      [alice, bob].every((u) => ledger().get(u.name)?.txPayloadBytes === send[u.name]! + 8 && ledger().get(u.name)?.rxPayloadBytes === reply[u.name]) || undefined,
    );
    const booked = ledger();
    const wireTotal = (name: string) => booked.get(name)!.txBytes + booked.get(name)!.rxBytes;
    // Prometheus has scraped the final figures: the counters are the ledger's, exactly
    const users = `user=~"${alice.name}|${bob.name}"`;
    await waitFor('a scrape with the ledger\'s final totals', async () => {
      const got = await prom.query(`sum by (user) (ubia_user_network_bytes_total{${users}})`);
      return got.length === 2 && got.every((s) => num(s) === wireTotal(s.metric.user!)) || undefined;
    });
    // evaluate at the last scrape, so increase() does not extrapolate past the data
    const at = num((await prom.query(`timestamp(ubia_user_network_bytes_total{user="${alice.name}",direction="transmit"})`))[0]);

    // ranked among the test's users only: the agent meters every user of the host, and
    // what others move meanwhile (the sink in the netns runs as root; a benchmark's iperf3
    // as its own user) is not this test's to rank
    const top = await prom.query(`topk(2, sum by (user) (increase(ubia_user_network_bytes_total{${users}}[1m])))`, at);
    expect(top.map((s) => s.metric.user), JSON.stringify(top)).toEqual([alice.name, bob.name]);
    expect(num(top[0])).toBeGreaterThan(num(top[1]));

    // "within one scrape interval's traffic": the largest step between two scrapes (the
    // first sample counts from zero: the users are new), against increase() over the window
    const increases = await prom.query(`sum by (user) (increase(ubia_user_network_bytes_total{${users}}[1m]))`, at);
    for (const name of [alice.name, bob.name]) {
      const series = await prom.samples(`ubia_user_network_bytes_total{user="${name}"}[1m] @ ${at}`);
      const perScrape = new Map<number, number>();
      for (const s of series) for (const [t, v] of s.values) perScrape.set(t, (perScrape.get(t) ?? 0) + Number(v));
      const values = [...perScrape.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
      const oneScrape = Math.max(...values.map((v, i) => v - (values[i - 1] ?? 0)));
      const increase = num(increases.find((s) => s.metric.user === name));
      expect(oneScrape, `${name}: one scrape interval's traffic`).toBeLessThan(wireTotal(name));
      expect(Math.abs(increase - wireTotal(name)), `${name}: increase ${increase} vs ubia users ${wireTotal(name)} (one scrape: ${oneScrape})`).toBeLessThanOrEqual(oneScrape);
    }

    // promtool lints the exposition as curl gets it (text format 0.0.4)
    const exposition = await (await fetch(`http://127.0.0.1:${endpoint}/metrics`)).text();
    for (const family of ['ubia_user_network_bytes_total', 'ubia_user_payload_bytes_total', 'ubia_process_network_bytes_total', 'ubia_interface_unattributed_bytes_total', 'ubia_meter_overflows_total', 'ubia_poll_duration_seconds']) {
      expect(exposition).toContain(`# TYPE ${family} `);
    }
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
    expect(lint.stdout + lint.stderr).toBe('');
    expect(lint.status).toBe(0);
    // and Prometheus took the OpenMetrics form, units included
    const meta = (await (await fetch(`http://127.0.0.1:${prom.port}/api/v1/targets/metadata?metric=ubia_user_network_bytes`)).json()) as { data: Array<{ type: string; unit: string }> };
    expect(meta.data[0]).toMatchObject({ type: 'counter', unit: 'bytes' });

    // kill -9; alice keeps sending while no agent runs (the kernel counts); a new agent
    // books it at its first poll, and only then answers scrapes
    // killed once the traffic's minute is complete and flushed (ledger rows, not only the
    // open minute), as it would be on a host
    const minute = 60_000;
    await new Promise((r) => setTimeout(r, minute - (Date.now() % minute) + 2500));
    const before = num((await prom.query(`ubia_user_network_bytes_total{user="${alice.name}",direction="transmit"}`))[0]);
    await agent.kill();
    await waitFor('Prometheus to see the agent down', async () => (num((await prom.query('up{job="ubia"}'))[0]) === 0 ? true : undefined));
    await sinkTraffic(alice, { host: net.peerV4, port: sink.port, send: 2_000_000, reply: 0, ms: 500 });
    agent = await startAgent(setup);
    await waitFor('a scrape of the restarted agent with the traffic sent while it was down', async () => {
      const now = num((await prom.query(`ubia_user_network_bytes_total{user="${alice.name}",direction="transmit"}`))[0]);
      return num((await prom.query('up{job="ubia"}'))[0]) === 1 && now >= before + 2_000_000 ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 3000)); // a few more scrapes of the new agent
    for (const family of ['ubia_user_network_bytes_total', 'ubia_user_network_packets_total', 'ubia_user_payload_bytes_total']) {
      const resets = await prom.query(`resets(${family}[5m])`);
      expect(resets.length, family).toBeGreaterThanOrEqual(2 * 2); // two users, two directions at least
      expect(resets.filter((s) => num(s) !== 0).map((s) => s.metric), family).toEqual([]);
    }
    expect(agent.logs()).not.toMatch(/"level":50/);
  }, 180_000);
});

// ---------- the guards ----------

describe('Prometheus endpoint guards', () => {
  it('refuses a listen address beyond loopback without allow_remote, naming file, line and key', async () => {
    const bed = await createTestbed('prom-listen', { users: 0 });
    cleanups.push(() => bed.remove());
    const file = writeAgentConfig({ dir: bed.dir, pinDir: bed.pinDir, extra: '\n[prometheus]\nlisten = "0.0.0.0:9781"\n' });
    const line = readFileSync(file, 'utf8').split('\n').indexOf('listen = "0.0.0.0:9781"') + 1;
    const r = spawnSync(process.execPath, [CLI, 'agent', '--config', file], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`${file}:${line}: prometheus.listen: listen is not a loopback address`);
    expect(r.stderr).toContain('allow_remote = true');
  });

  it('asks for the bearer token and, with TLS, for a client certificate its CA signed; Prometheus scrapes with both', async () => {
    const bed = await createTestbed('prom-auth', { users: 0 });
    cleanups.push(() => bed.remove());
    const { dir } = bed;
    const pki = makePki(join(dir, 'pki'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'file-token-0123456789\n', { mode: 0o644 });
    const endpoint = await freePort();
    const settings = (extra: string) => ({
      dir,
      pinDir: bed.pinDir,
      extra: `\n[prometheus]\nlisten = "127.0.0.1:${endpoint}"\nbearer_token = "inline-token"\nbearer_token_file = "${tokenFile}"\n${extra}`,
    });

    // a token file others can read is refused, with what to do
    const refused = spawnSync(process.execPath, [CLI, 'agent', '--config', writeAgentConfig(settings(''))], { encoding: 'utf8', timeout: 30_000 });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain(`chmod 600 ${tokenFile}`);
    chmodSync(tokenFile, 0o600);

    const agent = await startAgent(settings(`[prometheus.tls]\ncert_file = "${pki.serverCert}"\nkey_file = "${pki.serverKey}"\nclient_ca_file = "${pki.caCert}"\n`));
    cleanups.push(() => agent.stop());
    const good = { ca: readFileSync(pki.caCert), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) };
    const scrape = (tls: { ca: Buffer; cert?: Buffer; key?: Buffer }, token?: string) =>
      httpsGet(`https://127.0.0.1:${endpoint}/metrics`, tls, token ? { authorization: `Bearer ${token}` } : {});

    // TLS with a client certificate of the CA, and either token
    expect((await scrape(good, 'inline-token')).status).toBe(200);
    const ok = await scrape(good, 'file-token-0123456789');
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('# TYPE ubia_meter_events_dropped_total counter');
    // no token, a wrong token: 401 with the RFC 6750 challenge
    const none = await scrape(good);
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="ubia"');
    const wrong = await scrape(good, 'inline-tokeN');
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="ubia", error="invalid_token"');
    // no client certificate, or one from another CA: the handshake fails, nothing is served
    await expect(scrape({ ca: good.ca }, 'inline-token')).rejects.toThrow();
    await expect(scrape({ ca: good.ca, cert: readFileSync(pki.rogueCert), key: readFileSync(pki.rogueKey) }, 'inline-token')).rejects.toThrow();
    // plain HTTP gets no metrics either
    await expect(fetch(`http://127.0.0.1:${endpoint}/metrics`).then((r) => r.text())).rejects.toThrow();

    // Prometheus itself: with certificate and token up, without the token down (401)
    const tls = (withCert: boolean) =>
      `    scheme: https\n    tls_config:\n      ca_file: ${pki.caCert}\n${withCert ? `      cert_file: ${pki.clientCert}\n      key_file: ${pki.clientKey}\n` : ''}`;
    const prom = await startPrometheus(
      dir,
      job('good', `127.0.0.1:${endpoint}`, `${tls(true)}    authorization:\n      credentials_file: ${tokenFile}\n`) +
        job('notoken', `127.0.0.1:${endpoint}`, tls(true)) +
        job('nocert', `127.0.0.1:${endpoint}`, `${tls(false)}    authorization:\n      credentials: inline-token\n`),
    );
    const targets = async () => {
      const res = (await (await fetch(`http://127.0.0.1:${prom.port}/api/v1/targets`)).json()) as {
        data: { activeTargets: Array<{ labels: { job: string }; health: string; lastError: string }> };
      };
      const byJob = new Map(res.data.activeTargets.map((t) => [t.labels.job, t]));
      return byJob.size === 3 && [...byJob.values()].every((t) => t.health !== 'unknown') ? byJob : undefined;
    };
    const seen = await waitFor('Prometheus to scrape all three jobs', targets, 20_000);
    expect(seen.get('good')!.health, seen.get('good')!.lastError).toBe('up');
    expect(seen.get('notoken')!.health).toBe('down');
    expect(seen.get('notoken')!.lastError).toContain('401');
    expect(seen.get('nocert')!.health).toBe('down');
    expect(num((await prom.query('ubia_meter_events_dropped_total{job="good"}'))[0])).toBeGreaterThanOrEqual(0);
  }, 120_000);
});

function httpsGet(url: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const req = httpsRequest(url, { ...tls, headers, servername: 'localhost', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
  });
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate it signed,
 *  and a self-signed "rogue" client certificate (openssl). */
function makePki(dir: string) {
  mkdirSync(dir);
  const p = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const key = (name: string) => openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p(name));
  key('ca.key');
  openssl('req', '-x509', '-new', '-key', p('ca.key'), '-subj', '/CN=ubia test CA', '-days', '1', '-out', p('ca.pem'));
  const signed = (name: string, subject: string, ext: string) => {
    key(`${name}.key`);
    openssl('req', '-new', '-key', p(`${name}.key`), '-subj', subject, '-out', p(`${name}.csr`));
    writeFileSync(p(`${name}.ext`), ext);
    openssl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', p(`${name}.ext`), '-out', p(`${name}.pem`));
  };
  signed('server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  signed('client', '/CN=prometheus', 'extendedKeyUsage=clientAuth\n');
  key('rogue.key');
  openssl('req', '-x509', '-new', '-key', p('rogue.key'), '-subj', '/CN=rogue', '-days', '1', '-out', p('rogue.pem'));
  return {
    caCert: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    rogueCert: p('rogue.pem'),
    rogueKey: p('rogue.key'),
  };
}
