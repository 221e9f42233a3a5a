// `ubia top` in a real terminal (tmux, 80x24): shows the test users while they send,
// their processes on `p`, and quits on `q`. Plus `--once` as plain text.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import {
  CLI,
  cli,
  createNet,
  createUser,
  deleteUser,
  ensureBuilt,
  removeMeter,
  runTraffic,
  startAgent,
  startSink,
  tempDir,
  waitFor,
  type AgentProcess,
  type Sink,
  type TestNet,
  type TestUser,
} from './helpers/agent.js';

const TMUX = ['-L', `ubia-test-${process.pid}`];
const tmux = (...args: string[]) => execFileSync('tmux', [...TMUX, ...args], { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-t', 'top');

let dir: string;
let pinDir: string;
let net: TestNet;
let sink: Sink;
let dave: TestUser;
let erin: TestUser;
let agent: AgentProcess;

beforeAll(async () => {
  ensureBuilt();
  dir = tempDir('ubia-top-');
  pinDir = `/sys/fs/bpf/ubia-test-top-${process.pid}`;
  net = createNet();
  dave = createUser();
  erin = createUser();
  sink = await startSink(net, dir, 9001);
  agent = await startAgent({ dir, pinDir });
});

afterAll(async () => {
  spawnSync('tmux', [...TMUX, 'kill-server'], { stdio: 'ignore' });
  await agent?.stop();
  sink?.stop();
  net?.remove();
  if (dave) deleteUser(dave);
  if (erin) deleteUser(erin);
  await removeMeter(pinDir);
  rmSync(dir, { recursive: true, force: true });
});

describe('ubia top', () => {
  it('shows the users sending now, their processes on p, and quits on q (80x24 terminal)', async () => {
    const traffic = Promise.all([
      runTraffic(dave, dir, { host: net.peerV4, port: sink.port, send: 20_000_000, reply: 1000, ms: 6000 }),
      runTraffic(erin, dir, { host: net.peerV6, port: sink.port, send: 2_000_000, reply: 1000, ms: 6000 }),
    ]);
    tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24', `${process.execPath} ${CLI} --socket ${agent.socket} top --interval 0.3`);
    const shown = await waitFor('both users with a rate on screen', () => {
      const s = screen();
      const rows = s.split('\n');
      const d = rows.find((l) => l.startsWith(dave.name));
      const e = rows.find((l) => l.startsWith(erin.name));
      return d && e && /[KM]iB\/s/.test(d) && /[KM]iB\/s/.test(e) ? s : undefined;
    });
    const lines = shown.split('\n');
    expect(lines[0]).toMatch(/^ubia top /);
    expect(lines.findIndex((l) => l.startsWith(dave.name))).toBeLessThan(lines.findIndex((l) => l.startsWith(erin.name)));
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);

    tmux('send-keys', '-t', 'top', 'p');
    await waitFor('process rows under the users', () => {
      const rows = screen().split('\n');
      const i = rows.findIndex((l) => l.startsWith(dave.name));
      return i >= 0 && /^\s+\d+ \S+/.test(rows[i + 1] ?? '') ? true : undefined;
    });

    tmux('send-keys', '-t', 'top', 'q');
    await waitFor('top to quit', () => (spawnSync('tmux', [...TMUX, 'has-session', '-t', 'top']).status !== 0 ? true : undefined), 5000);
    await traffic;
  });

  it('--once prints one plain-text frame when stdout is not a terminal', () => {
    const r = cli(agent.socket, ['top', '--once']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\x1b');
    expect(r.stdout).toMatch(/^ubia top .*\n\nUSER \/ PROCESS\s+UID\s+RX\/s\s+TX\/s\s+RX today\s+TX today\n/);
    expect(r.stdout).toContain(dave.name);
  });
});
