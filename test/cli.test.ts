// The `ubia` command line as a user meets it: bad config files stop the agent with the
// file, line and key; a CLI without an agent says how to start it (exit 2); --daemon
// detaches and returns once the agent serves; argument errors are plain messages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, startAgent, writeAgentConfig } from './support/agent.js';
import { removeMeter, tempDir } from './support/testbed.js';
import { waitFor } from './support/wait.js';
import { controlRequest } from '../src/control/client.js';
import type { StatusResult } from '../src/control/protocol.js';
import { fitTable, humanBitRate, humanBytes, left, parseDuration, right, table, type FitColumn } from '../src/cli/format.js';

let dir: string;
beforeAll(() => {
  dir = tempDir('ubia-cli-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('ubia agent with a bad config file', () => {
  const cases: [string, string, RegExp][] = [
    ['syntax error', '[agent]\npoll_interval = 1\ncount_loopback = yes\n', /bad\.toml:3:\d+: TOML syntax error/],
    ['wrong type', '[agent]\n\npoll_interval = "1s"\n', /bad\.toml:3: agent\.poll_interval: .*expected number.*\(allowed: seconds/],
    ['unknown key', '[ledger]\npath = "/tmp/x.db"\nretention = 5\n', /bad\.toml:3: ledger\.retention: unknown key in \[ledger\]; allowed keys: path, flush_interval/],
    ['out of range', '[control]\nmax_clients = 0\n', /bad\.toml:2: control\.max_clients: .*>=1/],
  ];
  for (const [name, text, want] of cases) {
    it(`${name}: names the line and key, exits 1, starts nothing`, () => {
      const file = join(dir, 'bad.toml');
      writeFileSync(file, text);
      const r = run(['agent', '--config', file]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(want);
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    });
  }

  it('a missing --config file is an error that says so', () => {
    const r = run(['agent', '--config', join(dir, 'absent.toml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot read the config file \(ENOENT\)/);
  });
});

describe('ubia without an agent', () => {
  for (const cmd of [['users'], ['procs'], ['flows', '--json'], ['status'], ['top', '--once']]) {
    it(`${cmd.join(' ')}: says the agent is not running and how to start it (exit 2)`, () => {
      const r = run(['--socket', join(dir, 'none.sock'), ...cmd]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/the ubia agent is not running.*\nStart it with: systemctl start ubia/);
      expect(r.stdout).toBe('');
    });
  }

  it('bad arguments are plain errors (exit 1)', () => {
    const r = run(['--socket', join(dir, 'none.sock'), 'users', '--since', '5x']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--since 5x: expected local time \(or UTC with --utc\): 2026-11-27, .*a duration ago \(1h30m, 2d\)/);
  });

  it('the CLI checks its own options and says which one, before asking the agent', () => {
    for (const [args, want] of [
      [['top', '--processes', '500'], 'ubia: --processes: at most 100 (got 500)\n'],
      [['top', '--processes', '2.5'], 'ubia: --processes: expected a whole number from 0 to 100 (got 2.5)\n'],
      [['top', '--interval', '0'], 'ubia: --interval: expected a positive number (got 0)\n'],
    ] as const) {
      const r = run(['--socket', join(dir, 'none.sock'), ...args]);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`${want}(add --help for the options)\n`);
      expect(r.stderr).not.toMatch(/bad_request|invalid request|Too big/);
    }
  });

  it('finds the agent through --config (its control.socket) on every command', () => {
    const file = join(dir, 'other.toml');
    writeFileSync(file, `[control]\nsocket = "${join(dir, 'from-config.sock')}"\n`);
    for (const cmd of [['users'], ['procs'], ['flows'], ['status'], ['top', '--once']]) {
      const r = run(['--config', file, ...cmd]);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`nothing answers on ${join(dir, 'from-config.sock')}`);
    }
    const bad = run(['--config', join(dir, 'absent.toml'), 'users']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^ubia: [\s\S]*absent\.toml: cannot read the config file \(ENOENT\)/);
  });
});

describe('ubia agent as a user without the capabilities', () => {
  it('says so in one line, no JSON, no stack (exit 1)', () => {
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'agent'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('ubia agent: must run as root (it loads eBPF programs; missing CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF): sudo ubia agent, or systemctl start ubia\n');
  });
});

describe('ubia agent --daemon', () => {
  it('detaches, logs to log.daemon_file, and returns once the agent serves', async () => {
    const pinDir = `/sys/fs/bpf/ubia-test-daemon-${process.pid}`;
    const log = join(dir, 'agent.log');
    const config = writeAgentConfig({ dir, pinDir, extra: `\n[log]\ndaemon_file = "${log}"\n` });
    const socket = join(dir, 'control.sock');
    let pid: number | undefined;
    try {
      const r = run(['agent', '--config', config, '--daemon']);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      pid = Number(/pid (\d+)/.exec(r.stdout)![1]);
      const st = await controlRequest<StatusResult>(socket, { op: 'status' });
      expect(st.agent.pid).toBe(pid);
      expect(readFileSync(log, 'utf8')).toContain('"msg":"agent started"');
      process.kill(pid, 'SIGTERM');
      await waitFor('the daemon to exit', () => {
        try {
          process.kill(pid!, 0);
          return undefined;
        } catch {
          return true;
        }
      });
      expect(readFileSync(log, 'utf8')).toContain('agent stopped');
    } finally {
      if (pid) spawnSync('kill', ['-9', String(pid)]);
      await removeMeter(pinDir);
    }
  });
});

describe('ubia detach', () => {
  it('refuses while the agent runs or holds the pins; names its pid, never every agent; --force detaches', async () => {
    const pinDir = `/sys/fs/bpf/ubia-test-detach-${process.pid}`;
    const own = tempDir('ubia-detach-');
    const agent = await startAgent({ dir: own, pinDir });
    const pid = agent.proc.pid!;
    try {
      // no --socket: the running agent is found through the config's control.socket
      const refused = run(['--config', agent.configFile, 'detach']);
      expect(refused.stderr).toBe(`ubia detach: the agent (pid ${pid}) is running and answers on ${agent.socket}; stop it first: systemctl stop ubia, or kill ${pid}\n`);
      expect(refused.status).toBe(1);
      expect(existsSync(join(pinDir, 'maps'))).toBe(true);

      // an agent that does not answer still holds the maps
      process.kill(pid, 'SIGSTOP');
      const held = run(['--config', agent.configFile, 'detach']);
      expect(held.status).toBe(1);
      expect(held.stderr).toBe(
        `ubia detach: the counters under ${pinDir} are in use by pid ${pid} (an agent that does not answer?); stop it (kill ${pid}) or detach anyway with --force\n`,
      );
      expect(existsSync(join(pinDir, 'maps'))).toBe(true);
      const forced = run(['--config', agent.configFile, 'detach', '--force']);
      expect(forced.stderr).toBe('');
      expect(forced.status).toBe(0);
      expect(forced.stdout).toContain(`detached: the eBPF programs, counters and quota verdicts under ${pinDir} are gone`);
      expect(existsSync(pinDir)).toBe(false);
    } finally {
      process.kill(pid, 'SIGCONT');
      await agent.stop();
      await removeMeter(pinDir);
      rmSync(own, { recursive: true, force: true });
    }
  });

  it('a stopped agent: detaches without --force', async () => {
    const pinDir = `/sys/fs/bpf/ubia-test-detach2-${process.pid}`;
    const own = tempDir('ubia-detach-');
    const agent = await startAgent({ dir: own, pinDir });
    try {
      expect(await agent.stop()).toBe(0);
      expect(existsSync(join(pinDir, 'maps'))).toBe(true); // stopped, the kernel keeps counting
      const done = run(['--config', agent.configFile, 'detach']);
      expect(done.stderr).toBe('');
      expect(done.status).toBe(0);
      expect(existsSync(pinDir)).toBe(false);
    } finally {
      await removeMeter(pinDir);
      rmSync(own, { recursive: true, force: true });
    }
  });
});

describe('formatting', () => {
  it('human units, durations and tables', () => {
    expect(humanBytes(0)).toBe('0 B');
    expect(humanBytes(1023)).toBe('1023 B');
    expect(humanBytes(1536)).toBe('1.5 KiB');
    expect(humanBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(humanBytes(300 * 1024 ** 2)).toBe('300 MiB');
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1.5d')).toBe(129_600_000);
    expect(parseDuration('h')).toBeUndefined();
    const lines = table(
      [
        { title: 'NAME', align: 'left', value: (r: { n: string; v: number }) => r.n },
        { title: 'V', align: 'right', value: (r) => String(r.v) },
      ],
      [
        { n: 'a', v: 100 },
        { n: 'longer', v: 2 },
      ],
    );
    expect(lines).toEqual(['NAME      V', 'a       100', 'longer    2']);
  });

  it('fitTable cuts the name column first, then drops whole columns, never a figure', () => {
    type R = { n: string; a: string; b: string };
    const cols: FitColumn<R>[] = [
      { ...left<R>('NAME', (r) => r.n), drop: 0, minWidth: 4 },
      { ...right<R>('AAAA', (r) => r.a), drop: 1 },
      { ...right<R>('B', (r) => r.b), drop: 0 },
    ];
    const rows = [{ n: 'abcdefghij', a: '1.5 MiB', b: '20 KiB/s' }];
    expect(fitTable(cols, rows, 40)).toEqual(['NAME           AAAA         B', 'abcdefghij  1.5 MiB  20 KiB/s']);
    expect(fitTable(cols, rows, 26)).toEqual(['NAME        AAAA         B', 'abcdef…  1.5 MiB  20 KiB/s']);
    expect(fitTable(cols, rows, 20)).toEqual(['NAME               B', 'abcdefghij  20 KiB/s']);
    expect(humanBitRate(1_250_000)).toBe('10 Mbit/s');
    expect(humanBitRate(100)).toBe('800 bit/s');
  });
});
