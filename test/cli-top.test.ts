// `ubia top` in a real terminal (tmux, 80x24 and smaller), driven key by key while two
// test users send: sorting, help, bits/payload, processes, filter, drill-down to a
// process's flows and back, narrow and short windows, an agent restart. Plus `--once`
// as plain text and `--json` as NDJSON.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { CLI, cli, startAgent, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';
import type { TopResult } from '../src/control/protocol.js';

const TMUX = ['-L', `ubia-test-${process.pid}`];
const tmux = (...args: string[]) => execFileSync('tmux', [...TMUX, ...args], { encoding: 'utf8' });
const screen = () => tmux('capture-pane', '-p', '-t', 'top');
const keys = (...k: string[]) => tmux('send-keys', '-t', 'top', ...k);

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

/** Waits until the screen satisfies `ok`; on time-out the error shows the screen. */
function until(what: string, ok: (s: string, rows: string[]) => boolean, timeoutMs = 5000): Promise<string> {
  let last = '';
  return waitFor(
    what,
    () => {
      last = screen();
      if (ok(last, last.split('\n'))) return last;
      throw new Error(`the screen shows:\n${last}`);
    },
    timeoutMs,
  );
}

const rowOf = (rows: string[], u: TestUser) => rows.findIndex((l) => l.startsWith(u.name));
const busy = (rows: string[], u: TestUser) => /[KM]iB\/s/.test(rows[rowOf(rows, u)] ?? '');

describe('ubia top', () => {
  it('is driven by every key, survives an agent restart, and quits on q', async () => {
    const traffic = Promise.all([
      sinkTraffic(dave, { host: bed.net.peerV4, port: bed.sink.port, send: 40_000_000, reply: 1000, ms: 25_000 }),
      sinkTraffic(erin, { host: bed.net.peerV6, port: bed.sink.port, send: 4_000_000, reply: 1000, ms: 25_000 }),
    ]);
    tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24', `${process.execPath} ${CLI} --socket ${agent.socket} top --interval 0.3`);
    tmux('set-option', '-t', 'top', 'window-size', 'manual');
    const shown = await until('both users with a rate', (_, rows) => busy(rows, dave) && busy(rows, erin), 15_000);
    let lines = shown.split('\n');
    expect(lines[0]).toMatch(/^ubia top .*sort: rate {2}wire B\/s {2}h: help/);
    expect(rowOf(lines, dave)).toBeLessThan(rowOf(lines, erin));
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);

    // sort keys: name puts the two in name order; the header names each key's order
    keys('n');
    await until('sorted by name', (s, rows) => s.includes('sort: name') && rowOf(rows, dave) < rowOf(rows, erin) === dave.name < erin.name);
    for (const [key, name] of [['i', 'RX'], ['o', 'TX'], ['d', 'today'], ['r', 'rate']] as const) {
      keys(key);
      await until(`sorted by ${name}`, (s) => s.includes(`sort: ${name} `));
    }

    // help overlay, closed by h again and by Esc
    keys('h');
    await until('the help', (s) => s.includes('sort by total today') && s.includes('drill down'));
    keys('h');
    await until('help closed', (s) => !s.includes('drill down') && s.includes('USER / PROCESS'));
    keys('?');
    await until('the help on ?', (s) => s.includes('sort by total today'));
    keys('Escape');
    await until('help closed by Esc', (s) => !s.includes('sort by total today'));

    // bits and payload
    keys('b');
    await until('rates in bits', (s, rows) => s.includes('wire bit/s') && /[kM]bit\/s/.test(rows[rowOf(rows, dave)] ?? ''));
    keys('w');
    await until('payload figures', (s) => s.includes('payload bit/s'));
    keys('b', 'w');
    await until('wire bytes again', (s) => s.includes('wire B/s'));

    // processes under each user: their traffic client (traffic.py)
    const under = (rows: string[], u: TestUser) => rows[rowOf(rows, u) + 1] ?? '';
    keys('p');
    await until("each user's traffic client under them", (_, rows) => [dave, erin].every((u) => /^\s+\d+ python3\s.*[KM]iB\/s/.test(under(rows, u))));
    keys('p');

    // units under each user: the cgroup their traffic client runs in, with its rate
    keys('u');
    await until("each user's unit under them", (_, rows) => [dave, erin].every((u) => /^\s+\[.+\]\s.*[KM]iB\/s/.test(under(rows, u))));
    keys('u');

    // filter: only erin; Esc while typing a new one clears it
    keys('/');
    keys('-l', erin.name);
    keys('Enter');
    await until('only erin', (s, rows) => s.includes(`filter: ${erin.name}`) && rowOf(rows, erin) > 0 && rowOf(rows, dave) < 0);
    keys('/');
    keys('Escape');
    await until('the filter gone', (_, rows) => rowOf(rows, dave) > 0 && rowOf(rows, erin) > 0);

    // drill down: dave (filtered to, so selected whoever else sends) → his processes → the client's flows
    keys('/');
    keys('-l', dave.name);
    keys('Enter');
    await until('only dave', (_, rows) => rowOf(rows, dave) > 0 && rowOf(rows, erin) < 0);
    keys('Enter');
    await until("dave's processes", (s, rows) => s.includes(`${dave.name} › processes`) && rows.some((l) => /^\d+ python3\s.*[KM]iB\/s/.test(l)));
    keys('Enter');
    const flows = await until("the client's flow", (s) => s.includes('› flows') && s.includes(`${bed.net.peerV4}:${bed.sink.port}`));
    expect(flows).not.toContain('::ffff:');
    keys('Escape');
    await until('back to the processes', (s) => s.includes(`${dave.name} › processes`) && !s.includes('› flows'));
    keys('Escape');
    await until('back to the users', (s, rows) => !s.includes('›') && rowOf(rows, dave) > 0);
    keys('/');
    keys('Escape');
    await until('everyone again', (_, rows) => rowOf(rows, dave) > 0 && rowOf(rows, erin) > 0);

    // the selection (reverse video) follows j/k and the arrow keys
    const selected = () => tmux('capture-pane', '-e', '-p', '-t', 'top').split('\n').findIndex((l) => l.includes('\x1b[7m'));
    const first = await waitFor('a selected row', () => (selected() > 0 ? selected() : undefined));
    keys('j');
    await waitFor('j moves down', () => (selected() === first + 1 ? true : undefined), 3000);
    keys('k');
    await waitFor('k moves up', () => (selected() === first ? true : undefined), 3000);
    keys('Down');
    await waitFor('Down moves down', () => (selected() === first + 1 ? true : undefined), 3000);
    keys('Up');
    await waitFor('Up moves up', () => (selected() === first ? true : undefined), 3000);

    // 40 columns: whole columns go (UID, the totals), the rates stay whole
    tmux('resize-window', '-t', 'top', '-x', '40', '-y', '24');
    const narrow = await until('the narrow layout', (s, rows) => !s.includes('UID') && /RX\/s\s+TX\/s$/.test(rows.find((l) => l.includes('RX/s')) ?? ''));
    for (const l of narrow.split('\n')) expect(l.length).toBeLessThanOrEqual(40);
    const daveRow = narrow.split('\n').find((l) => l.startsWith(dave.name.slice(0, 8)))!;
    expect(daveRow).toMatch(/\d (B|KiB|MiB)\/s\s+[\d.]+ (B|KiB|MiB)\/s$/);

    // 6 rows: what does not fit is counted
    tmux('resize-window', '-t', 'top', '-x', '80', '-y', '6');
    keys('p');
    await until('+N more', (_, rows) => rows.some((l) => /^\+\d+ more$/.test(l)));
    keys('p');
    tmux('resize-window', '-t', 'top', '-x', '80', '-y', '24');

    // the agent restarts: top waits for it and carries on
    await agent.stop();
    await until('reconnecting', (s) => s.includes('reconnecting…'));
    agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    const restarted = Date.now();
    await until('back with both users', (s, rows) => !s.includes('reconnecting') && busy(rows, dave) && busy(rows, erin), 10_000);
    expect(Date.now() - restarted).toBeLessThan(5000);

    keys('q');
    await waitFor('top to quit', () => (spawnSync('tmux', [...TMUX, 'has-session', '-t', 'top']).status !== 0 ? true : undefined), 5000);
    await traffic;
  }, 90_000);

  it('--once prints one plain-text frame when stdout is not a terminal', () => {
    const r = cli(agent.socket, ['top', '--once']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\x1b');
    expect(r.stdout).toMatch(/^ubia top .*\n\nUSER \/ PROCESS\s+UID\s+RX\/s\s+TX\/s\s+RX today\s+TX today\n/);
    expect(r.stdout).toContain(dave.name);
  });

  it('--json prints one JSON document per interval', () => {
    const r = cli(agent.socket, ['top', '--json', '-n', '3', '--interval', '0.2']);
    expect(r.code).toBe(0);
    const docs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as TopResult);
    expect(docs).toHaveLength(3);
    expect(new Set(docs.map((d) => d.at)).size).toBe(3);
    for (const d of docs) expect(d.users.find((u) => u.uid === dave.uid)?.txBytesToday).toBeGreaterThan(0);
  });
});
