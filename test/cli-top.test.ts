// `ubia top` in a real terminal (tmux, 80x24): shows the test users while they send,
// their processes on `p`, and quits on `q`. Plus `--once` as plain text.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { CLI, cli, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';

const TMUX = ['-L', `ubia-test-${process.pid}`];
const tmux = (...args: string[]) => execFileSync('tmux', [...TMUX, ...args], { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-t', 'top');

let bed: Testbed;
let dave: TestUser;
let erin: TestUser;
let agent: AgentProcess;

beforeAll(async () => {
  bed = await createTestbed('top', { users: 2, sinkPort: 9001 });
  [dave, erin] = bed.users as [TestUser, TestUser];
  agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
});

afterAll(async () => {
  spawnSync('tmux', [...TMUX, 'kill-server'], { stdio: 'ignore' });
  await agent?.stop();
  await bed?.remove();
});

describe('ubia top', () => {
  it('shows the users sending now, their processes on p, and quits on q (80x24 terminal)', async () => {
    const traffic = Promise.all([
      sinkTraffic(dave, { host: bed.net.peerV4, port: bed.sink.port, send: 20_000_000, reply: 1000, ms: 6000 }),
      sinkTraffic(erin, { host: bed.net.peerV6, port: bed.sink.port, send: 2_000_000, reply: 1000, ms: 6000 }),
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
    // each user's busiest process is their traffic client (traffic.py), shown sending
    const underUser = (rows: string[], u: TestUser) => rows[rows.findIndex((l) => l.startsWith(u.name)) + 1] ?? '';
    await waitFor('each user\'s traffic client under them', () => {
      const rows = screen().split('\n');
      if ([dave, erin].every((u) => /^\s+\d+ python3\s.*[KM]iB\/s/.test(underUser(rows, u)))) return true;
      throw new Error(`the screen shows:\n${rows.join('\n')}`);
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
