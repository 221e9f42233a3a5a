// Config loading: defaults, and each kind of bad file gives file:line, the key and what
// is allowed (the "bad config files" list).
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../src/config/load.js';
import { locateKey } from '../src/config/locate.js';

function problems(text: string): string[] {
  try {
    parseConfig(text, 'ubia.toml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('an empty file gives the documented defaults', () => {
    const c = parseConfig('', 'ubia.toml');
    expect(c.agent.poll_interval).toBe(1);
    expect(c.agent.count_loopback).toBe(false);
    expect(c.ledger.path).toBe('/var/lib/ubia/ledger.db');
    expect(c.control.socket).toBe('/run/ubia/control.sock');
  });

  it('keeps given values and fills the rest', () => {
    const c = parseConfig('[agent]\npoll_interval = 0.5\n[ledger]\npath = "/tmp/x.db"\n', 'ubia.toml');
    expect(c.agent.poll_interval).toBe(0.5);
    expect(c.ledger.path).toBe('/tmp/x.db');
    expect(c.ledger.flush_interval).toBe(10);
  });

  it('syntax error names line and column', () => {
    const [p] = problems('[agent]\npoll_interval = 1\ncount_loopback = tru\n');
    expect(p).toMatch(/^ubia\.toml:3:\d+: TOML syntax error/);
  });

  it('wrong type names line, key and what is allowed', () => {
    const [p] = problems('# comment\n[agent]\n\npoll_interval = "fast"\n');
    expect(p).toMatch(/^ubia\.toml:4: agent\.poll_interval: .*number/);
    expect(p).toContain('allowed: seconds between two reads');
  });

  it('unknown key is an error listing the allowed keys', () => {
    const [p] = problems('[ledger]\npath = "/tmp/l.db"\nflush_intervall = 5\n');
    expect(p).toMatch(/^ubia\.toml:3: ledger\.flush_intervall: unknown key in \[ledger\]; allowed keys: .*flush_interval/);
  });

  it('unknown table is an error', () => {
    const [p] = problems('[agnet]\npoll_interval = 1\n');
    expect(p).toMatch(/^ubia\.toml:1: agnet: unknown key/);
  });

  it('out-of-range value names the key and the range', () => {
    const [p] = problems('[control]\nmax_request_bytes = 10\n');
    expect(p).toMatch(/^ubia\.toml:2: control\.max_request_bytes: .*256/);
  });

  it('reports every problem, each with its own line', () => {
    const ps = problems('[agent]\npoll_interval = 0\n[log]\nlevel = "loud"\n');
    expect(ps).toHaveLength(2);
    expect(ps[0]).toMatch(/^ubia\.toml:2: agent\.poll_interval/);
    expect(ps[1]).toMatch(/^ubia\.toml:4: log\.level/);
  });

  it('locates dotted keys and quoted keys', () => {
    const text = 'agent.poll_interval = 2\n[ledger]\n"path" = 1\n';
    expect(locateKey(text, ['agent', 'poll_interval'])).toBe(1);
    expect(locateKey(text, ['ledger', 'path'])).toBe(3);
  });

  it('missing default file means defaults; missing explicit file is an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ubia-cfg-'));
    try {
      expect(() => loadConfig(join(dir, 'absent.toml'))).toThrow(/cannot read the config file \(ENOENT\)/);
      writeFileSync(join(dir, 'u.toml'), '[agent]\ncount_loopback = true\n');
      const l = loadConfig(join(dir, 'u.toml'));
      expect(l.config.agent.count_loopback).toBe(true);
      expect(l.file).toBe(join(dir, 'u.toml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('exporter sections', () => {
  it('are optional and validated by their own schema, with lines', () => {
    expect(parseConfig('', 'ubia.toml').ipfix).toBeUndefined();
    const [p] = problems('[agent]\npoll_interval = 1\n\n[[ipfix.collectors]]\naddress = "127.0.0.1"\nport = 70000\n');
    expect(p).toMatch(/^ubia\.toml:6: ipfix\.collectors\.0\.port: /);
  });
});

describe('settings that pass the schema but would misbehave', () => {
  const diameter = (idle: number) =>
    `[diameter]\norigin_realm = "example.net"\ndestination_realm = "aaa.example.net"\nidle_timeout = ${idle}\n[[diameter.servers]]\nhost = "aaa1.example.net"\n`;

  it('diameter.idle_timeout not longer than agent.flow_interval is refused at its line', () => {
    const [p] = problems(`[agent]\nflow_interval = 30\n${diameter(20)}`);
    expect(p).toMatch(/^ubia\.toml:6: diameter\.idle_timeout: 20 s is not longer than agent\.flow_interval \(30 s\)/);
    expect(parseConfig(`[agent]\nflow_interval = 30\n${diameter(31)}`, 'ubia.toml').diameter!.idle_timeout).toBe(31);
  });

  it('control.admin_group naming no group on the host is refused at its line (real NSS look-up)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ubia-cfg-'));
    try {
      const file = join(dir, 'u.toml');
      writeFileSync(file, '[control]\nsocket = "/run/ubia-x.sock"\nadmin_group = "ubia-no-such-group-7f3"\n');
      expect(() => loadConfig(file)).toThrow(new RegExp(`${file}:3: control\\.admin_group: no group "ubia-no-such-group-7f3" exists`));
      writeFileSync(file, '[control]\nadmin_group = "root"\n');
      expect(loadConfig(file).config.control.admin_group).toBe('root');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
