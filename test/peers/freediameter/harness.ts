// The real accounting peer for the tests: freeDiameterd with app_acct storing every ACR
// into a throw-away PostgreSQL cluster, all on loopback in a temp dir.
//   const pg = await startPostgres(); const fd = await startFreeDiameter({ pg });
//   ... await fd.stop(); await fd.start(); ... await fd.stop(); await pg.stop();
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../support/testbed.js';
import { waitFor } from '../../support/wait.js';

const HERE = new URL('.', import.meta.url).pathname;
const PG_BIN = '/usr/lib/postgresql/15/bin';
export const SERVER_IDENTITY = 'aaa.test.local';
export const REALM = 'test.local';

/** The ACR AVPs app_acct stores, one column each (contrib/app_acct_tools/database.sql types). */
const COLUMNS: [avp: string, type: string][] = [
  ['Session-Id', 'bytea'],
  ['Origin-Host', 'bytea'],
  ['Origin-Realm', 'bytea'],
  ['Destination-Realm', 'bytea'],
  ['Destination-Host', 'bytea'],
  ['Accounting-Record-Type', 'integer'],
  ['Accounting-Record-Number', 'integer'],
  ['Acct-Application-Id', 'integer'],
  ['User-Name', 'bytea'],
  ['Event-Timestamp', 'bytea'],
  ['Acct-Interim-Interval', 'integer'],
  ['Accounting-Input-Octets', 'bigint'],
  ['Accounting-Output-Octets', 'bigint'],
  ['Accounting-Input-Packets', 'bigint'],
  ['Accounting-Output-Packets', 'bigint'],
  ['Acct-Session-Time', 'integer'],
  ['NAS-Identifier', 'bytea'],
  ['Termination-Cause', 'integer'],
];

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

export interface AcctRow {
  sessionId: string;
  originHost: string;
  recordType: number;
  recordNumber: number;
  userName: string;
  nasIdentifier: string;
  inputOctets: number;
  outputOctets: number;
  inputPackets: number;
  outputPackets: number;
  sessionTime: number;
  interimInterval: number;
  terminationCause: number | null;
  destinationHost: string | null;
}

export interface Postgres {
  socketDir: string;
  port: number;
  connInfo: string;
  sql(query: string): string;
  rows(): AcctRow[];
  stop(): Promise<void>;
}

/** initdb refuses root, so the cluster belongs to the postgres user; psql connects over
 *  the unix socket in the cluster's own temp dir (trust auth). */
export async function startPostgres(): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'ubia-pg-'));
  chownSync(dir, uidOf('postgres'), gidOf('postgres'));
  const data = join(dir, 'data');
  const port = await freePort();
  const asPostgres = (bin: string, args: string[]): string =>
    execFileSync('runuser', ['-u', 'postgres', '--', join(PG_BIN, bin), ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'pg.log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses='' -c fsync=off`, 'start']);
  const sql = (query: string): string =>
    execFileSync('psql', ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-AtX', '-v', 'ON_ERROR_STOP=1', '-c', query], { encoding: 'utf8' });
  sql(`CREATE TABLE incoming (${COLUMNS.map(([c, t]) => `"${c}" ${t}`).join(', ')}, recorded_on timestamp with time zone)`);
  const text = (c: string): string => `convert_from("${c}", 'UTF8')`;
  return {
    socketDir: dir,
    port,
    connInfo: `host=${dir} port=${port} dbname=postgres user=postgres`,
    sql,
    rows() {
      const out = sql(`SELECT json_agg(r) FROM (SELECT ${text('Session-Id')} AS "sessionId", ${text('Origin-Host')} AS "originHost",
          "Accounting-Record-Type" AS "recordType", "Accounting-Record-Number" AS "recordNumber", ${text('User-Name')} AS "userName",
          ${text('NAS-Identifier')} AS "nasIdentifier", "Accounting-Input-Octets" AS "inputOctets", "Accounting-Output-Octets" AS "outputOctets",
          "Accounting-Input-Packets" AS "inputPackets", "Accounting-Output-Packets" AS "outputPackets", "Acct-Session-Time" AS "sessionTime",
          "Acct-Interim-Interval" AS "interimInterval", "Termination-Cause" AS "terminationCause", ${text('Destination-Host')} AS "destinationHost"
        FROM incoming ORDER BY recorded_on, "Accounting-Record-Number") r`).trim();
      return out ? (JSON.parse(out) as AcctRow[]) : [];
    },
    async stop() {
      try {
        asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const uidOf = (user: string): number => Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
const gidOf = (user: string): number => Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());

export interface TlsFiles {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A throw-away CA that signs the server's certificate (aaa.test.local, 127.0.0.1) and the
 *  client's (its CN must be the client's Origin-Host: freeDiameter checks it). */
export function makeTlsFiles(dir: string, clientIdentity: string): TlsFiles {
  const f = (n: string): string => join(dir, n);
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=ubia test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  for (const [name, cn, san] of [
    ['server', SERVER_IDENTITY, `DNS:${SERVER_IDENTITY},IP:127.0.0.1`],
    ['client', clientIdentity, `DNS:${clientIdentity}`],
  ] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\n`);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
  }
  return { ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}

export interface FreeDiameter {
  port: number;
  /** TLS-from-the-start port (RFC 6733 §13), when started with tls */
  tlsPort: number | undefined;
  /** everything freeDiameterd printed, across restarts */
  log(): string;
  /** every ACR freeDiameter received, in order (needs dumpMessages) */
  receivedAcrs(): ReceivedAcr[];
  start(): Promise<void>;
  /** SIGTERM (freeDiameter sends DPRs) unless kill is true (SIGKILL, connections just drop) */
  stop(kill?: boolean): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that accepts bytes and answers nothing until resumed */
  pause(): void;
  resume(): void;
  /** stops it for good and removes its temp dir */
  close(): Promise<void>;
}

export interface ReceivedAcr {
  sessionId: string;
  recordNumber: number;
  /** the T flag (RFC 6733 §3): a re-sent request */
  retransmit: boolean;
}

// dbg_msg_dumps "full" format: one line per message, e.g.
// RCV from 'agent.test.local': Accounting-Request(3/271)[RP-T], …, { Session-Id(263)[-M]="…" }, … { Accounting-Record-Number(485)[-M]=3 (0x3) }
const RECEIVED_ACR = /RCV from '[^']*': Accounting-Request\(3\/271\)\[([^\]]*)\].*?Session-Id\(263\)\[[^\]]*\]="([^"]*)".*?Accounting-Record-Number\(485\)\[[^\]]*\]=(\d+)/;

function parseReceivedAcrs(log: string): ReceivedAcr[] {
  const out: ReceivedAcr[] = [];
  for (const line of log.split('\n')) {
    const m = RECEIVED_ACR.exec(line);
    if (m) out.push({ sessionId: m[2]!, recordNumber: Number(m[3]), retransmit: m[1]!.includes('T') });
  }
  return out;
}

/** Builds (first time) or finds the cached app_acct.fdx; a failed build throws with the
 *  script's own account of what went wrong and what to do. */
export function buildAppAcct(): string {
  const r = spawnSync(join(HERE, 'build-app-acct.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 900_000 });
  if (r.status !== 0) {
    throw new Error(`cannot build freeDiameter's app_acct.fdx (test/peers/freediameter/build-app-acct.sh exited ${r.status ?? r.signal}):\n${r.stderr.slice(-4000)}`);
  }
  return r.stdout.trim();
}

export async function startFreeDiameter(opts: { pg: Postgres; tls?: TlsFiles; dumpMessages?: boolean }): Promise<FreeDiameter> {
  const appAcct = buildAppAcct();
  const dir = mkdtempSync(join(tmpdir(), 'ubia-fd-'));
  const port = await freePort();
  const tlsPort = opts.tls ? await freePort() : undefined;
  writeFileSync(join(dir, 'acl_wl.conf'), `ALLOW_IPSEC *.${REALM}\n`);
  writeFileSync(
    join(dir, 'app_acct.conf'),
    [`ConnInfo = "${opts.pg.connInfo}";`, 'Table = "incoming";', 'Timestamp_field = "recorded_on";', ...COLUMNS.map(([c]) => `"${c}";`)].join('\n') + '\n',
  );
  writeFileSync(
    join(dir, 'freeDiameter.conf'),
    [
      `Identity = "${SERVER_IDENTITY}";`,
      `Realm = "${REALM}";`,
      `Port = ${port};`,
      `SecPort = ${tlsPort ?? 0};`,
      'No_SCTP;',
      'No_IPv6;',
      'NoRelay;',
      ...(opts.tls ? [`TLS_Cred = "${opts.tls.serverCert}", "${opts.tls.serverKey}";`, `TLS_CA = "${opts.tls.ca}";`] : []),
      'LoadExtension = "/usr/lib/freeDiameter/dict_nasreq.fdx";',
      `LoadExtension = "/usr/lib/freeDiameter/acl_wl.fdx" : "${join(dir, 'acl_wl.conf')}";`,
      // 0x0144: errors and sent/received messages one line each ("full"), routing quiet
      ...(opts.dumpMessages ? ['LoadExtension = "/usr/lib/freeDiameter/dbg_msg_dumps.fdx" : "0x0144";'] : []),
      `LoadExtension = "${appAcct}" : "${join(dir, 'app_acct.conf')}";`,
    ].join('\n') + '\n',
  );
  const logFile = join(dir, 'freeDiameterd.log');
  writeFileSync(logFile, '');
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    const c = spawn('freeDiameterd', ['-c', join(dir, 'freeDiameter.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const append = (b: Buffer): void => writeFileSync(logFile, b, { flag: 'a' });
    c.stdout!.on('data', append);
    c.stderr!.on('data', append);
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    await Promise.race([
      waitFor(`freeDiameterd on port ${port}`, () => canConnect(port), 20_000),
      exited.then(() => {
        throw new Error(`freeDiameterd exited at start:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
      }),
    ]);
  }

  async function stop(kill = false): Promise<void> {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(kill ? 'SIGKILL' : 'SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    await waitFor(`port ${port} to be released`, async () => !(await canConnect(port)), 5000);
  }

  await start();
  return {
    port,
    tlsPort,
    log: () => readFileSync(logFile, 'utf8'),
    receivedAcrs: () => parseReceivedAcrs(readFileSync(logFile, 'utf8')),
    start,
    stop,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Ubia-Job-Id (vendor 32473, code 1) of each ACR of a session freeDiameter received,
 *  first sends only, in record-number order. freeDiameter has no dictionary entry for
 *  it, so dbg_msg_dumps prints it as `{ unknown(32473/1)[V-]=<hex of the value> }`: the
 *  flags show the V bit set and the M bit clear. */
export function jobIdsReceived(log: string, sessionId: string): string[] {
  const ids: [number, string][] = [];
  for (const line of log.split('\n')) {
    const acr = RECEIVED_ACR.exec(line);
    if (!acr || acr[2] !== sessionId || acr[1]!.includes('T')) continue;
    const job = /\{ unknown\(32473\/1\)\[V-\]=([0-9a-f]*) \}/.exec(line);
    ids.push([Number(acr[3]), job ? Buffer.from(job[1]!, 'hex').toString('utf8') : '']);
  }
  return ids.sort((a, b) => a[0] - b[0]).map(([, id]) => id);
}
