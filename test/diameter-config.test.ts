// The [diameter] section goes through the agent's own config loader: defaults, and each
// kind of mistake named with file:line, the key and what to do.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { createDiameterAccounting } from '../src/export/diameter/index.js';
import { memoryLogger, tempLedger } from './peers/freediameter/client.js';

/** What the loader says about a bad file: one "file:line: key: problem (allowed: …)" each. */
const problems = (text: string): string[] => {
  const err = ((): unknown => {
    try {
      parseConfig(text, 'ubia.toml');
    } catch (e) {
      return e;
    }
  })();
  expect(err, 'a ConfigError').toBeInstanceOf(ConfigError);
  return (err as ConfigError).problems;
};

const MINIMAL = '[diameter]\norigin_realm = "example.net"\ndestination_realm = "aaa.example.net"\n[[diameter.servers]]\nhost = "aaa1.example.net"\n';

describe('[diameter] configuration', () => {
  it('a minimal section gets RFC defaults: Tw 30 s, Tc 30 s, port 3868 over TCP', () => {
    const d = parseConfig(MINIMAL, 'ubia.toml').diameter!;
    expect(d).toMatchObject({
      watchdog_interval: 30,
      reconnect_interval: 30,
      request_timeout: 10,
      interim_interval: 300,
      idle_timeout: 900,
      max_in_flight: 1000,
      vendor_id: 0,
      product_name: 'ubia',
      servers: [{ host: 'aaa1.example.net', transport: 'tcp' }],
    });
    expect(d.servers[0]!.port).toBeUndefined(); // the peer picks 3868 (tcp) or 5658 (tls)
    expect(parseConfig('', 'ubia.toml').diameter).toBeUndefined(); // no section: no Diameter
  });

  it('names the line, the key and what is allowed', () => {
    expect(problems('[diameter]\ndestination_realm = "c"\nservers = [ { host = "x" } ]\n')).toEqual([
      expect.stringMatching(/^ubia\.toml:1: diameter\.origin_realm: .*expected string.*allowed: this agent's Origin-Realm/),
    ]);
    expect(problems('[diameter]\norigin_realm = "a b"\ndestination_realm = "c"\nservers = [ { host = "x" } ]\n')).toEqual([
      expect.stringMatching(/^ubia\.toml:2: diameter\.origin_realm: a DiameterIdentity is an FQDN \(RFC 6733 §4\.3\.1\)/),
    ]);
    const p = problems(`${MINIMAL}[[diameter.servers]]\nhost = "b"\n[[diameter.servers]]\nhost = "c"\n`);
    expect(p).toEqual([expect.stringMatching(/diameter\.servers: .*<=2 items.*the primary server, then optionally a secondary/)]);
    expect(problems(MINIMAL.replace('[[diameter', 'watchdog_interval = 0\n[[diameter'))).toEqual([
      expect.stringMatching(/^ubia\.toml:4: diameter\.watchdog_interval: .*>=1.*Tw, seconds/),
    ]);
    expect(problems(MINIMAL.replace('[[diameter', 'interimIntervalSeconds = 60\n[[diameter'))).toEqual([
      expect.stringMatching(/diameter\.interimIntervalSeconds: unknown key in \[diameter\]; allowed keys: .*interim_interval/),
    ]);
    expect(problems(`${MINIMAL}port = 70000\n`)).toEqual([expect.stringMatching(/diameter\.servers\.0\.port: .*<=65535/)]);
  });

  it('TLS needs its files: a missing section and an unreadable file each say what to fix', () => {
    expect(problems(`${MINIMAL}transport = "tls"\n`)).toEqual([
      expect.stringMatching(/diameter\.servers\.0\.transport: transport "tls" needs a \[diameter\.tls\] section with ca, cert and key files/),
    ]);
    const config = parseConfig(`${MINIMAL}transport = "tls"\n[diameter.tls]\nca = "/nonexistent/ca.pem"\ncert = "/nonexistent/c.pem"\nkey = "/nonexistent/c.key"\n`, 'ubia.toml').diameter!;
    const ledger = tempLedger();
    try {
      expect(() => createDiameterAccounting(config, { logger: memoryLogger().logger, db: ledger.db, hostName: 'agent' })).toThrow(
        /diameter TLS file \/nonexistent\/ca\.pem cannot be read \(.*ENOENT.*\): fix \[diameter\.tls\] ca in the config/,
      );
    } finally {
      ledger.dispose();
    }
  });
});
