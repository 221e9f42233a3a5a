// `npm run bench:agent [SECONDS]`: the real agent (`bin/ubia agent`, its own process,
// real eBPF meter, SQLite ledger on disk, 1 s poll, 5 s flow reads, 10 s flushes) while
// 5,000 users hold 10,000 active flows that all move every second: one process
// (test/support/traffic.py many-flows) plays the users, each with a TCP connection to a server in a
// network namespace behind a veth pair, both ends metered. Reports the agent process's
// CPU (% of one core, from /proc: its JavaScript, SQLite and the kernel time of its
// reads and folds) and RSS over SECONDS (default 60) after a warm-up.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentAnswers, controlRequest } from '../src/control/client.js';
import { detachMeter } from '../src/kernel/index.js';
import { createNet } from '../test/support/testbed.js';
import { serveTraffic } from '../test/support/traffic.js';
import { sleep } from '../test/support/wait.js';

const USERS = 5000;
/** connections: each has two metered ends, the user's and the server's */
const CONNECTIONS = 5000;
const FIRST_UID = 200_000;
const WARMUP_S = 10;
const PORT = 7300;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** user and system CPU of a process, in ms (/proc/PID/stat fields 14 and 15, in clock ticks of 10 ms) */
function cpuMs(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10, system: Number(fields[12]) * 10 };
}

/** /proc/PID/smaps_rollup: the process's resident memory by kind, in MiB. */
function rssByKind(pid: number): { anonymous: number; fileBacked: number } {
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))![1]);
  return { anonymous: Math.round(kib('Anonymous') / 1024), fileBacked: Math.round((kib('Rss') - kib('Anonymous')) / 1024) };
}

function statusKiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 60);
  const dir = mkdtempSync(join(tmpdir(), 'ubia-bench-'));
  const pinDir = '/sys/fs/bpf/ubia-bench-agent';
  const socket = join(dir, 'control.sock');
  writeFileSync(
    join(dir, 'ubia.toml'),
    `[agent]\npoll_interval = 1\nflow_interval = 5\npin_dir = "${pinDir}"\n` +
      `[ledger]\npath = "${join(dir, 'ledger.db')}"\nflush_interval = 10\n` +
      `[control]\nsocket = "${socket}"\n[log]\nlevel = "warn"\n`,
  );
  const net = createNet();
  const children: ChildProcess[] = [];
  const lifetime = String(WARMUP_S + seconds + 60);
  try {
    const server = serveTraffic(['echo-many', net.peerV4, String(PORT), lifetime, String(CONNECTIONS)], { net }, Number(lifetime) * 1000);
    children.push(server.proc);
    await server.ready;
    const agent = spawn(join(root, 'bin', 'ubia'), ['agent', '--config', join(dir, 'ubia.toml')], { stdio: 'inherit' });
    children.push(agent);
    for (let i = 0; i < 100 && !(await agentAnswers(socket, 200)); i++) await sleep(100);
    if (!(await agentAnswers(socket))) throw new Error('the agent did not answer on its control socket within 10 s');
    const client = serveTraffic(['many-flows', net.peerV4, String(PORT), String(CONNECTIONS), String(FIRST_UID), String(USERS), lifetime], {}, Number(lifetime) * 1000);
    children.push(client.proc);
    await client.ready;
    // the first polls book every counter as new and fill the name cache
    await sleep(WARMUP_S * 1000);
    const pid = agent.pid!;
    const cpu0 = cpuMs(pid);
    const t0 = performance.now();
    let rssMaxKiB = 0;
    for (let i = 0; i < seconds; i++) {
      await sleep(1000);
      rssMaxKiB = Math.max(rssMaxKiB, statusKiB(pid, 'VmRSS'));
    }
    const cpu1 = cpuMs(pid);
    const userMs = cpu1.user - cpu0.user;
    const systemMs = cpu1.system - cpu0.system;
    const cpu = userMs + systemMs;
    const rssAtEnd = rssByKind(pid);
    const wallMs = performance.now() - t0;
    const hwmKiB = statusKiB(pid, 'VmHWM');

    // what the agent saw: the benchmark's users and their moving flows
    const { active } = await controlRequest<{ active: Array<{ uid: number; rxBytes: number; txBytes: number }> }>(socket, { op: 'flows' }, 30_000);
    const theirs = active.filter((f) => f.uid >= FIRST_UID && f.uid < FIRST_UID + USERS);
    const result = {
      users: new Set(theirs.map((f) => f.uid)).size,
      activeFlows: active.length,
      usersFlows: theirs.length,
      seconds: Math.round(wallMs / 1000),
      agentCpuPercentOfOneCore: +((cpu / wallMs) * 100).toFixed(2),
      agentCpuMsPerPoll: +(cpu / (wallMs / 1000)).toFixed(1),
      /** of which in the kernel: map reads, the fold, the ledger's writes */
      agentSystemCpuMsPerPoll: +(systemMs / (wallMs / 1000)).toFixed(1),
      rssMaxMiB: Math.round(rssMaxKiB / 1024),
      rssPeakSinceStartMiB: Math.round(hwmKiB / 1024),
      rssPeakSinceStartMB: +((hwmKiB * 1024) / 1e6).toFixed(1),
      /** private memory (V8 heap, malloc) vs file pages (node's own binary, libraries) and mmap-ed maps */
      rssAtEndMiB: rssAtEnd,
    };
    const stopped = new Promise((resolve) => agent.once('exit', resolve));
    agent.kill('SIGTERM');
    await Promise.race([stopped, sleep(10000)]);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (result.users < USERS || result.activeFlows < 2 * CONNECTIONS) process.stdout.write(`NOT THE INTENDED LOAD: expected ${USERS} users and ${2 * CONNECTIONS} flows\n`);
    // the target is 100 MB: decimal megabytes, the stricter reading
    const ok = result.agentCpuPercentOfOneCore < 1 && hwmKiB * 1024 < 100e6;
    process.stdout.write(ok ? 'within target (< 1% of a core, peak RSS < 100 MB)\n' : 'OVER TARGET (< 1% of a core, peak RSS < 100 MB)\n');
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await sleep(500);
    detachMeter(pinDir);
    net.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
