// npm run chaos: the real agent (eBPF meter, ledger, control socket) with all three
// exporters to real peers — freeDiameter/app_acct (PostgreSQL), an IPFIX collector over
// TCP decoded by libfixbuf's ipfixDump, an OTLP/HTTP receiver — for WINDOW_S seconds while
// test users make known traffic to a network namespace and, at once:
//   - another test user attacks the control socket (hundreds of idle connections, which
//     fill max_clients and are refused/busy; slow-loris senders; pipelined requests never read),
//   - the IPFIX collector, the OTLP receiver and the AAA server go down and come back,
//   - SIGHUPs arrive in bursts (the configuration alternating, so exporters are replaced),
//   - the agent is SIGKILL-ed and restarted on the same ledger and pin directory, and
//     later SIGSTOP-ed for 3 s.
// Then each check below is its own test (pass/fail with its figures; vitest exits non-zero
// on any failure): ledger = bytes generated per user; Diameter STOP counters = ledger;
// IPFIX per-user records = ledger with no duplicate; agent fds and RSS bounded; root's
// `ubia status` latency bounded throughout. Run as root; about 2 minutes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest } from '../src/control/client.js';
import type { StatusResult } from '../src/control/protocol.js';
import { Ledger } from '../src/ledger/ledger.js';
import { startAgent, writeAgentConfig, type AgentProcess, type AgentSetup } from '../test/support/agent.js';
import { ipfixDump, tcpSink, type TcpSink } from '../test/support/ipfix.js';
import { startReceiver, type Receiver } from '../test/support/otlp-receiver.js';
import { createTestbed, freePort, type Testbed, type TestUser } from '../test/support/testbed.js';
import { sinkTraffic } from '../test/support/traffic.js';
import { sleep, waitFor } from '../test/support/wait.js';
import { bySession, dedupeChecked } from '../test/peers/freediameter/checks.js';
import { REALM, startFreeDiameter, startPostgres, type AcctRow, type FreeDiameter, type Postgres } from '../test/peers/freediameter/harness.js';

const WINDOW_S = 100;
const TRAFFIC_USERS = 4;
/** how long SIGTERM may take before the agent is killed (and the check fails) */
const STOP_TIMEOUT_MS = 20_000;
/** bounds the checks hold the agent to (issue 12's targets) */
const MAX_STATUS_MS = 200;
const MAX_RSS_MB = 150;
const MAX_FDS = 400;
/** the traffic client's request header (8 bytes: the reply size) */
const REQUEST_HEAD = 8;
const ELEMENTS_XML = join(import.meta.dirname, '..', 'packaging', 'ipfix', 'ubia-elements.xml');

interface Generated {
  tx: number;
  rx: number;
  rounds: number;
  /** rounds whose client gave no result (what they moved is unknown): when, and why (the
   *  client's last line of error) */
  failed: { atS: number; ms: number; why: string }[];
}

interface Sample {
  atS: number;
  ms: number;
  /** the error, when the request failed */
  error?: string;
}

let bed: Testbed;
let users: TestUser[];
let attacker: TestUser;
let pg: Postgres;
let fd: FreeDiameter;
let agent: AgentProcess;
let setup: AgentSetup;
let otlp: Receiver;
const ipfixSinks: TcpSink[] = [];
const generated = new Map<number, Generated>();
const latency: Sample[] = [];
const resources: { fds: number; rssMb: number }[] = [];
let agentUp = false;
/** counts the agent's downs (kill, stop): a status request in flight across one is not sampled */
let downs = 0;
const agentDown = () => {
  agentUp = false;
  downs++;
};
let t0 = 0;
let stopCode: number | null | 'timeout' = null;
let restartError: string | undefined;
const events: string[] = [];
/** the log of each agent process that ended (kept after the run: the checks cite them) */
const agentLogs: string[] = [];

const at = () => ((Date.now() - t0) / 1000).toFixed(1);
const note = (what: string) => {
  events.push(`${at()} s ${what}`);
  console.log(`chaos ${at()} s: ${what}`);
};

/** the agent's config: the three exporters; `variant` changes only the OTLP interval, so a
 *  SIGHUP that switches variants replaces every exporter */
function exporterSections(ipfixPort: number, otlpPort: number, variant: 0 | 1): string {
  return `
[diameter]
origin_host = "agent.${REALM}"
origin_realm = "${REALM}"
destination_realm = "${REALM}"
interim_interval = 5
servers = [ { host = "127.0.0.1", port = ${fd.port} } ]

[otlp]
endpoint = "http://127.0.0.1:${otlpPort}/v1/metrics"
protocol = "http/json"
temporality = "delta"
interval = ${2 + variant}
timeout = 1

[ipfix]
usage_interval = 2

[[ipfix.collectors]]
address = "127.0.0.1"
port = ${ipfixPort}
transport = "tcp"
records = ["users"]
reconnect_min = 1
reconnect_max = 2
`;
}

// The attacker: a test user's process holding idle connections (past max_clients they are
// refused "busy"), slow-loris senders (a byte every 2 s) and pipelining clients that never
// read, reconnecting whatever the agent does, until its deadline.
const ATTACK = `
import net from 'node:net';
const [socket, seconds] = [process.argv[2], Number(process.argv[3])];
const end = Date.now() + seconds * 1000;
const open = new Set();
function keep(kind, start) {
  if (Date.now() > end) return;
  const s = net.connect(socket);
  open.add(s);
  s.on('error', () => {});
  s.on('close', () => { open.delete(s); setTimeout(() => keep(kind, start), 200); });
  s.on('connect', () => start(s));
}
const line = JSON.stringify({ op: 'status' }) + '\\n';
for (let i = 0; i < 300; i++) keep('idle', () => {});
for (let i = 0; i < 50; i++) keep('slow', (s) => {
  const t = setInterval(() => (s.destroyed ? clearInterval(t) : s.write('{')), 2000);
});
for (let i = 0; i < 20; i++) keep('pipeline', (s) => { s.pause(); s.write(line.repeat(5000)); });
setTimeout(() => { for (const s of open) s.destroy(); process.exit(0); }, seconds * 1000);
`;

async function trafficLoop(u: TestUser, i: number, endMs: number): Promise<void> {
  const g: Generated = { tx: 0, rx: 0, rounds: 0, failed: [] };
  generated.set(u.uid, g);
  // a directory per user: runTraffic writes its client script there at every call
  const dir = join(bed.dir, `traffic-${u.name}`);
  mkdirSync(dir, { mode: 0o755 });
  const send = 400_000 + 200_000 * i;
  const reply = 600_000 + 100_000 * i;
  while (Date.now() < endMs) {
    const host = i % 2 ? bed.net.peerV6 : bed.net.peerV4;
    const started = Date.now();
    try {
      g.rx += await sinkTraffic(u, { host, port: bed.sink.port, send, reply, ms: 3000 });
      g.tx += send + REQUEST_HEAD;
      g.rounds++;
    } catch (e) {
      const why = lastLine((e as Error).message);
      g.failed.push({ atS: (started - t0) / 1000, ms: Date.now() - started, why });
      // one line each for the first few: a dead sink makes hundreds, all alike
      if (g.failed.length <= 3) note(`${u.name}: a traffic round failed after ${Date.now() - started} ms: ${why}`);
    }
  }
}

/** ipfixDump's dateTimeMilliseconds ("2026-12-06 08:23:01.123", UTC) in ms */
const ipfixTime = (v: string) => (/^\d+$/.test(v) ? Number(v) : Date.parse(`${v.replace(' ', 'T')}Z`));

const lastLine = (text: string) => text.trim().split('\n').at(-1)!.trim();

/** root's `ubia status` every 250 ms while the agent is up */
async function sampleLatency(endMs: number): Promise<void> {
  while (Date.now() < endMs) {
    if (agentUp) {
      const start = Date.now();
      const downsBefore = downs;
      const error = await controlRequest<StatusResult>(agent.socket, { op: 'status' }, 5000).then(() => undefined, (e: Error) => e.message);
      if (agentUp && downs === downsBefore) latency.push({ atS: (start - t0) / 1000, ms: Date.now() - start, ...(error !== undefined ? { error } : {}) });
    }
    await sleep(250);
  }
}

function sampleResources(endMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (Date.now() > endMs) {
        clearInterval(timer);
        resolve();
        return;
      }
      const pid = agent.proc.pid;
      if (!agentUp || pid === undefined) return;
      try {
        const fds = readdirSync(`/proc/${pid}/fd`).length;
        const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
        resources.push({ fds, rssMb: rssKb / 1000 });
      } catch { /* exited between the two reads */ }
    }, 1000);
  });
}

function attack(seconds: number): Promise<void> {
  const file = join(bed.dir, 'attack.mjs');
  writeFileSync(file, ATTACK);
  chmodSync(file, 0o644);
  const p = spawn('setpriv', [`--reuid=${attacker.uid}`, `--regid=${attacker.gid}`, '--clear-groups', process.execPath, file, agent.socket, String(seconds)], { stdio: 'ignore' });
  return new Promise((resolve) => p.on('exit', () => resolve()));
}

const after = (s: number) => sleep(Math.max(0, t0 + s * 1000 - Date.now()));

/** The outages, SIGHUP bursts and the SIGKILL, on a fixed timeline. */
async function disturb(ipfixPort: number, otlpPort: number): Promise<void> {
  const hupBurst = async (variant: 0 | 1) => {
    // kept in `setup`: the agent restarted after the SIGKILL gets the configuration in
    // force, and the next burst changes it again (else it would rewrite the same file)
    setup = { ...setup, extra: exporterSections(ipfixPort, otlpPort, variant) };
    writeAgentConfig(setup);
    note(`10 SIGHUPs 0.2 s apart (config variant ${variant})`);
    for (let i = 0; i < 10; i++) {
      agent.proc.kill('SIGHUP');
      await sleep(200);
    }
  };
  await after(10);
  note('IPFIX collector down');
  await ipfixSinks.at(-1)!.close();
  await after(15);
  note('OTLP receiver down');
  await otlp.close();
  await after(20);
  note('AAA server down (SIGTERM, DPR)');
  await fd.stop();
  await after(25);
  note('IPFIX collector back');
  ipfixSinks.push(await tcpSink(ipfixPort));
  await after(30);
  note('OTLP receiver back');
  otlp = await startReceiver(otlpPort);
  await after(35);
  await hupBurst(1);
  await after(40);
  note('AAA server back');
  await fd.start();
  await after(50);
  note('agent SIGKILL');
  agentDown();
  await agent.kill();
  agentLogs.push(agent.logs());
  const restartedAt = Date.now();
  try {
    agent = await startAgent(setup);
    agentUp = true;
    note(`agent restarted (serving after ${Date.now() - restartedAt} ms, the attack going on)`);
  } catch (e) {
    restartError = (e as Error).message;
    note(`agent did not come back: ${restartError}`);
  }
  await after(65);
  await hupBurst(0);
  await after(75);
  note('AAA server killed (SIGKILL, connections drop)');
  await fd.stop(true);
  await after(85);
  note('AAA server back');
  await fd.start();
  await after(90);
  // stopped, not killed: the kernel counts on (ring events past its buffer are dropped),
  // the agent takes it all up where it stopped; root's requests wait meanwhile, unsampled
  note('agent SIGSTOP for 3 s');
  agentDown();
  agent.proc.kill('SIGSTOP');
  await sleep(3000);
  agent.proc.kill('SIGCONT');
  agentUp = true;
  note('agent SIGCONT');
}

beforeAll(async () => {
  pg = await startPostgres();
  fd = await startFreeDiameter({ pg, dumpMessages: true });
  bed = await createTestbed('chaos', { users: TRAFFIC_USERS + 1, sinkPort: 9000 });
  // the traffic rounds need it to the end: its death would fail every round after it
  bed.sink.proc.on('exit', (code, signal) => note(`the traffic sink exited (${code ?? signal})`));
  users = bed.users.slice(0, TRAFFIC_USERS);
  attacker = bed.users.at(-1)!;
  const ipfixPort = await freePort();
  ipfixSinks.push(await tcpSink(ipfixPort));
  otlp = await startReceiver();
  setup = { dir: bed.dir, pinDir: bed.pinDir, extra: exporterSections(ipfixPort, otlp.port, 0) };
  agent = await startAgent(setup);
  agentUp = true;
  await waitFor('the Diameter peer open', async () => {
    const s = await controlRequest<StatusResult>(agent.socket, { op: 'status' });
    return s.exporters.find((e) => e.name === 'diameter')?.state === 'ok' ? true : undefined;
  });

  t0 = Date.now();
  const endMs = t0 + WINDOW_S * 1000;
  note('traffic, attack and samplers start');
  await Promise.all([
    ...users.map((u, i) => trafficLoop(u, i, endMs)),
    attack(WINDOW_S),
    sampleLatency(endMs),
    sampleResources(endMs),
    disturb(ipfixPort, otlp.port),
  ]);
  if (!agentUp) {
    // locked out while the attack went on: start it again so the other checks still measure
    agent = await startAgent(setup);
    agentUp = true;
    note('agent started again once the attack was over');
  }
  note('traffic and attack over; waiting for the exporters to deliver');
  await waitFor('the exporters to deliver what they queued', async () => {
    const s = await controlRequest<StatusResult>(agent.socket, { op: 'status' });
    return s.exporters.every((e) => e.queued === 0) ? true : undefined;
  }, 60_000).catch((e: Error) => note(`not delivered: ${e.message}`));
  agentUp = false;
  stopCode = await Promise.race([agent.stop(), sleep(STOP_TIMEOUT_MS).then(() => 'timeout' as const)]);
  if (stopCode === 'timeout') await agent.kill();
  note(`agent stopped (SIGTERM): ${stopCode === 'timeout' ? `still running after ${STOP_TIMEOUT_MS / 1000} s, killed` : `exit ${stopCode}`}`);
  for (const s of ipfixSinks) await s.close();
  agentLogs.push(agent.logs());
  const logDir = mkdtempSync(join(tmpdir(), 'ubia-chaos-logs-'));
  agentLogs.forEach((text, k) => writeFileSync(join(logDir, `agent-${k + 1}.log`), text));
  console.log(`chaos timeline:\n  ${events.join('\n  ')}\nthe agents' logs (one per start): ${logDir}`);
}, (WINDOW_S + 300) * 1000);

afterAll(async () => {
  await agent?.kill();
  await otlp?.close();
  await bed?.remove();
  await fd?.close();
  await pg?.stop();
});

/** Per test user, the ledger's totals (external scope) since the run began. */
function ledgerTotals() {
  const ledger = new Ledger(join(bed.dir, 'ledger.db'));
  const totals = ledger.totals(t0 - 3_600_000, Date.now() + 60_000);
  ledger.close();
  return new Map(users.map((u) => [u.uid, totals.find((t) => t.uid === u.uid && t.scope === 'external')]));
}

describe('chaos: the agent under attack, outages, reloads and a SIGKILL', () => {
  it('the agent, SIGKILL-ed, came back and served root while under attack', () => {
    expect(restartError).toBeUndefined();
  });

  it('the agent stopped cleanly at SIGTERM (exit 0)', () => {
    expect(stopCode).toBe(0);
  });

  it('every user\'s ledger total equals the bytes generated (payload, exact)', () => {
    const booked = ledgerTotals();
    const rows = users.map((u) => {
      const g = generated.get(u.uid)!;
      const t = booked.get(u.uid);
      return { user: u.name, rounds: g.rounds, failed: g.failed.length, sent: g.tx, booked_tx: t?.txPayloadBytes ?? 0, received: g.rx, booked_rx: t?.rxPayloadBytes ?? 0 };
    });
    console.table(rows);
    for (const u of users) {
      const { failed } = generated.get(u.uid)!;
      const why = new Map<string, number>();
      for (const f of failed) why.set(f.why, (why.get(f.why) ?? 0) + 1);
      if (failed.length) console.log(`${u.name}: ${failed.length} rounds failed, the first at ${failed[0]!.atS.toFixed(1)} s: ${[...why].map(([w, n]) => `${n} × ${w}`).join('; ')}`);
    }
    for (const r of rows) {
      expect(r.failed, `${r.user}: traffic rounds without a result (their bytes are unknown)`).toBe(0);
      expect([r.user, r.booked_tx, r.booked_rx]).toEqual([r.user, r.sent, r.received]);
    }
  });

  it('Diameter: the STOPs\' counters, summed over each user\'s sessions, equal the ledger', () => {
    const booked = ledgerTotals();
    const mine = (id: string) => users.some((u) => id.endsWith(`;ubia-${u.uid}`));
    const received = fd.receivedAcrs().filter((r) => mine(r.sessionId));
    const sessions = bySession(dedupeChecked(pg.rows().filter((r) => mine(r.sessionId)), received));
    const rows = users.map((u) => {
      const own = [...sessions].filter(([id]) => id.endsWith(`;ubia-${u.uid}`)).map(([, rs]) => rs);
      const stops = own.map((rs) => rs.at(-1)!).filter((r: AcctRow) => r.recordType === 4);
      const sum = (k: 'inputOctets' | 'outputOctets') => stops.reduce((n, r) => n + r[k], 0);
      const t = booked.get(u.uid);
      return { user: u.name, sessions: own.length, stopped: stops.length, stop_in: sum('inputOctets'), ledger_tx: t?.txBytes ?? 0, stop_out: sum('outputOctets'), ledger_rx: t?.rxBytes ?? 0 };
    });
    console.table(rows);
    console.log(`ACRs received ${received.length}, of which re-sent with T ${received.filter((r) => r.retransmit).length}`);
    // when each session ran (Session-Id's high part is its start second, RFC 6733 §8.8):
    // time between one session's STOP and the next one's start was handed to no session
    for (const u of users) {
      const spans = [...sessions].filter(([id]) => id.endsWith(`;ubia-${u.uid}`)).map(([id, rs]) => {
        const start = Number(id.split(';')[1]) * 1000;
        const last = rs.at(-1)!;
        return `${((start - t0) / 1000).toFixed(0)}–${((start - t0) / 1000 + last.sessionTime).toFixed(0)} s (${rs.length} records, in ${last.inputOctets})`;
      });
      console.log(`${u.name} sessions: ${spans.join(', ')}`);
    }
    for (const r of rows) {
      expect(r.stopped, `${r.user}: every session ended with a STOP`).toBe(r.sessions);
      expect([r.user, r.stop_in, r.stop_out]).toEqual([r.user, r.ledger_tx, r.ledger_rx]);
    }
  });

  it('IPFIX: per-user records, one per record number, sum to the ledger; none sent twice', async () => {
    const booked = ledgerTotals();
    const seen = new Map<string, string>();
    let duplicates = 0;
    let conflicting = 0;
    const sums = new Map<number, { rx: number; tx: number; records: number }>();
    const windows = new Map<number, { start: number; end: number; tx: number }[]>();
    let n = 0;
    for (const sink of ipfixSinks) {
      for (const chunks of sink.connections) {
        const file = join(bed.dir, `ipfix-${n++}.bin`);
        writeFileSync(file, Buffer.concat(chunks));
        const { messages } = await ipfixDump(file, ELEMENTS_XML);
        for (const m of messages) {
          m.records.forEach((r, k) => {
            const number = `${m.domain}/${(m.sequence + k) >>> 0}`;
            const content = JSON.stringify(r);
            if (seen.has(number)) {
              duplicates++;
              if (seen.get(number) !== content) conflicting++;
              return;
            }
            seen.set(number, content);
            const uid = Number(r.ubiaUserId);
            const s = sums.get(uid) ?? { rx: 0, tx: 0, records: 0 };
            s.rx += Number(r.ubiaWireOctetsIn);
            s.tx += Number(r.ubiaWireOctetsOut);
            s.records++;
            sums.set(uid, s);
            windows.set(uid, [...(windows.get(uid) ?? []), { start: ipfixTime(r.flowStartMilliseconds!), end: ipfixTime(r.flowEndMilliseconds!), tx: Number(r.ubiaWireOctetsOut) }]);
          });
        }
      }
    }
    const rows = users.map((u) => {
      const s = sums.get(u.uid) ?? { rx: 0, tx: 0, records: 0 };
      const t = booked.get(u.uid);
      return { user: u.name, records: s.records, ipfix_tx: s.tx, ledger_tx: t?.txBytes ?? 0, ipfix_rx: s.rx, ledger_rx: t?.rxBytes ?? 0 };
    });
    console.table(rows);
    // a user's windows tile the run (each starts where the last poll of the one before
    // ended, across a crash too: the open window is saved with the checkpoint); a gap is
    // polls no record holds
    for (const u of users) {
      const list = (windows.get(u.uid) ?? []).sort((a, b) => a.start - b.start);
      const gaps = list.slice(1).map((w, k) => ({ fromS: (list[k]!.end - t0) / 1000, toS: (w.start - t0) / 1000 })).filter((g) => g.toS - g.fromS > 0.001);
      console.log(`${u.name}: ${list.length} IPFIX windows, ${gaps.length} gaps${gaps.map((g) => ` ${g.fromS.toFixed(2)}–${g.toS.toFixed(2)} s`).join(',')}`);
    }
    console.log(`IPFIX connections ${n}, records ${seen.size + duplicates}, sent twice (same number) ${duplicates}, numbers naming two different records ${conflicting}`);
    expect(conflicting, 'a record number names one record').toBe(0);
    expect(duplicates, 'records sent twice').toBe(0);
    for (const r of rows) expect([r.user, r.ipfix_tx, r.ipfix_rx]).toEqual([r.user, r.ledger_tx, r.ledger_rx]);
  });

  it(`the agent's open file descriptors stay under ${MAX_FDS}`, () => {
    const max = Math.max(...resources.map((r) => r.fds));
    console.log(`fds: ${resources.length} samples, max ${max}, last ${resources.at(-1)?.fds}`);
    expect(resources.length).toBeGreaterThan(WINDOW_S / 2);
    expect(max).toBeLessThan(MAX_FDS);
  });

  it(`the agent's RSS stays under ${MAX_RSS_MB} MB`, () => {
    const max = Math.max(...resources.map((r) => r.rssMb));
    console.log(`RSS: max ${max.toFixed(1)} MB, last ${resources.at(-1)?.rssMb.toFixed(1)} MB`);
    expect(max).toBeLessThan(MAX_RSS_MB);
  });

  it(`root's ubia status answers within ${MAX_STATUS_MS} ms throughout`, () => {
    const ms = latency.map((s) => s.ms).sort((a, b) => a - b);
    const failed = latency.filter((s) => s.error !== undefined);
    const slow = latency.filter((s) => s.ms >= MAX_STATUS_MS);
    const over100 = latency.filter((s) => s.ms >= 100).map((s) => `${s.ms} ms at ${s.atS.toFixed(1)} s`);
    const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
    console.log(
      `status: ${latency.length} requests, median ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${ms.at(-1)} ms; failed ${failed.length}, ≥ ${MAX_STATUS_MS} ms ${slow.length}` +
        (slow.length ? ` (first at ${slow[0]!.atS.toFixed(1)} s)` : '') +
        (failed.length ? `; first failure at ${failed[0]!.atS.toFixed(1)} s: ${failed[0]!.error}` : '') +
        (over100.length ? `; ≥ 100 ms: ${over100.join(', ')}` : ''),
    );
    expect(latency.length).toBeGreaterThan(WINDOW_S);
    expect(failed.length, 'requests that failed').toBe(0);
    expect(ms.at(-1)!).toBeLessThan(MAX_STATUS_MS);
  });
});
