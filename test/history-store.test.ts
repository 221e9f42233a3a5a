// The flow store and the query language over it: no root, no kernel (a temp DuckDB file).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FlowStore, type StoredFlow } from '../src/history/store.js';
import { compileQuery } from '../src/history/query.js';
import { bigIntToAddress } from '../src/history/address.js';

const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);

function flow(over: Partial<StoredFlow>): StoredFlow {
  return {
    startMs: T0, endMs: T0 + 1000, uid: 1001, user: 'alice', pid: 10, comm: 'curl', exe: '/usr/bin/curl', unit: 'session-3.scope',
    protocol: 6, family: 4, localAddress: '198.18.0.1', localPort: 40000, remoteAddress: '198.18.1.2', remotePort: 443,
    rxBytes: 1000, txBytes: 100, rxPackets: 10, txPackets: 5, rxPayloadBytes: 900, txPayloadBytes: 50, ...over,
  };
}

describe('flow store', () => {
  let dir: string;
  let store: FlowStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ubia-history-'));
    store = await FlowStore.open(join(dir, 'flows', 'flows.duckdb'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const run = (q: Parameters<typeof compileQuery>[0]) => store.query(compileQuery(q));
  const all = { fromMs: 0, toMs: T0 + 86_400_000, limit: 100 };

  it('keeps records across a reopen, readable by root only', async () => {
    await store.append([flow({}), flow({ uid: 1002, user: 'bob', remoteAddress: '2001:db8::5', family: 6 })]);
    store.close();
    store = await FlowStore.open(join(dir, 'flows', 'flows.duckdb'));
    expect(await store.count()).toBe(2);
    expect(statSync(join(dir, 'flows')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'flows', 'flows.duckdb')).mode & 0o777).toBe(0o600);
    const rows = await run({ ...all, order: 'user' });
    expect(rows.map((r) => [r.user, bigIntToAddress(r.remote_addr as bigint)])).toEqual([
      ['alice', '198.18.1.2'],
      ['bob', '2001:db8::5'],
    ]);
  });

  it('stores every field of every record as given, across chunks and address forms', async () => {
    // more than one chunk (2,048 rows); addresses written as DuckDB's 128-bit words, so the
    // expected integers are spelled out here, not computed by the code under test
    const mapped = (v4: bigint) => (0xffffn << 32n) | v4;
    const special: [string, bigint][] = [
      ['2001:db8::5', 0x20010db8000000000000000000000005n],
      ['2001:db8:1:2:3:4:5:6', 0x20010db8000100020003000400050006n],
      ['fe80::1%eth0', 0xfe800000000000000000000000000001n],
      ['::ffff:198.18.0.9', mapped(0xc6120009n)],
      ['255.255.255.255', mapped(0xffffffffn)],
      ['not an address', 0n],
    ];
    const n = 2100;
    const flows = Array.from({ length: n }, (_, i) => {
      const remote = i < special.length ? special[i]![0] : `198.18.${i >> 8}.${i & 255}`;
      return flow({
        startMs: T0 + i, endMs: T0 + i + 0.5, uid: 1000 + (i % 3), user: `u${i % 3}`, pid: 40_000 + i, comm: `c${i % 4}`, exe: i % 4 === 0 ? null : `/bin/c${i % 4}`,
        unit: `job_${i % 5}`, protocol: i % 2 ? 17 : 6, family: i < 3 ? 6 : 4, localAddress: i % 100 < 50 ? '198.18.0.1' : '2001:db8::1', localPort: 1024 + i,
        remoteAddress: remote, remotePort: 65535 - i, rxBytes: 2 ** 40 + i, txBytes: i * 3, rxPackets: i, txPackets: i + 1, rxPayloadBytes: i * 0.5, txPayloadBytes: 7,
      });
    });
    await store.append(flows);
    const rows = await store.query({ sql: 'SELECT * FROM flow_records ORDER BY start_ms', params: [] });
    expect(rows).toHaveLength(n);
    rows.forEach((r, i) => {
      const f = flows[i]!;
      const remote = i < special.length ? special[i]![1] : mapped((198n << 24n) | (18n << 16n) | BigInt(i));
      expect(r).toEqual({
        start_ms: f.startMs, end_ms: f.endMs, uid: f.uid, user: f.user, pid: f.pid, comm: f.comm, exe: f.exe, unit: f.unit, protocol: f.protocol, family: f.family,
        local_addr: f.localAddress === '198.18.0.1' ? mapped(0xc6120001n) : 0x20010db8000000000000000000000001n, local_port: f.localPort,
        remote_addr: remote, remote_port: f.remotePort, rx_bytes: f.rxBytes, tx_bytes: f.txBytes, rx_packets: f.rxPackets, tx_packets: f.txPackets,
        rx_payload_bytes: f.rxPayloadBytes, tx_payload_bytes: f.txPayloadBytes, program: r.program,
      });
    });
    // one program per (comm, exe), one unit per name
    expect(new Set(rows.map((r) => r.program)).size).toBe(4);
  });

  it('refuses a batch with a value its column cannot hold, rather than store another number', async () => {
    for (const bad of [{ pid: 2 ** 31 }, { pid: -(2 ** 31) - 1 }, { remotePort: 65536 }, { localPort: 1.5 }, { protocol: 256 }]) {
      await expect(store.append([flow({}), flow(bad)])).rejects.toThrow(/do not fit their columns/);
    }
    expect(await store.count()).toBe(0);
    await store.append([flow({ uid: 2 ** 31 - 1, pid: 0, remotePort: 65535, protocol: 255 })]);
    expect((await run(all)).map((r) => [r.uid, r.pid, r.remote_port, r.protocol])).toEqual([[2 ** 31 - 1, 0, 65535, 255]]);
  });

  it('filters, groups by user and remote/24, filters groups and orders', async () => {
    await store.append([
      flow({ remoteAddress: '198.18.1.2', rxBytes: 5_000_000 }),
      flow({ remoteAddress: '198.18.1.99', rxBytes: 6_000_000 }),
      flow({ remoteAddress: '198.18.2.1', rxBytes: 100 }),
      flow({ uid: 0, user: 'root', remoteAddress: '198.18.1.3', rxBytes: 50_000_000 }),
      flow({ protocol: 17, remotePort: 53, remoteAddress: '198.18.1.4', rxBytes: 20_000_000 }),
    ]);
    const rows = await run({ ...all, where: 'proto tcp and not user root', groupBy: 'user,remote/24', having: 'bytes > 10M', order: '-bytes', remotes: true });
    expect(rows).toHaveLength(1);
    // users are grouped by uid (named by the control handler)
    expect(rows[0]).toMatchObject({ k0: 1001, flows: 2, rx_bytes: 11_000_000, tx_bytes: 200, remotes: 2 });
    expect(bigIntToAddress(rows[0]!.k1 as bigint)).toBe('198.18.1.0');
    const dns = await run({ ...all, where: 'udp and dst port 53 and net 198.18.0.0/15', groupBy: 'remote_port' });
    expect(dns.map((r) => [r.k0, r.bytes])).toEqual([[53, 20_000_100]]);
    // the distinct count only when asked for, or named by --having/--order
    expect(dns[0]).not.toHaveProperty('remotes');
    expect((await run({ ...all, groupBy: 'user', having: 'remotes >= 2' })).map((r) => [r.k0, r.remotes])).toEqual([[1001, 4]]);
  });

  it('keeps each record\'s unit: a filter term and a group-by key', async () => {
    await store.append([
      flow({ unit: 'job_7/step_0', rxBytes: 700 }),
      flow({ unit: 'job_7/step_0', rxBytes: 70 }),
      flow({ unit: 'nginx.service', rxBytes: 5 }),
    ]);
    const byUnit = await run({ ...all, groupBy: 'unit' });
    expect(byUnit.map((r) => [r.k0, r.rx_bytes]).sort()).toEqual([['job_7/step_0', 770], ['nginx.service', 5]]);
    expect((await run({ ...all, where: 'unit nginx.service' })).map((r) => [r.unit, r.rx_bytes])).toEqual([['nginx.service', 5]]);
  });

  it('a non-admin sees only the uids in their sight', async () => {
    await store.append([flow({}), flow({ uid: 1002, user: 'bob' }), flow({ uid: 1003, user: 'carol' })]);
    const rows = await run({ ...all, uids: [1002, 1003], groupBy: 'user', order: 'user' });
    expect(rows.map((r) => r.k0)).toEqual([1002, 1003]);
    expect(store.userName(1002)).toBe('bob');
  });

  it('counts a record in the range it ends in', async () => {
    await store.append([flow({ endMs: T0 + 500 }), flow({ endMs: T0 + 1500 })]);
    const before = await run({ fromMs: 0, toMs: T0 + 1000, limit: 10, groupBy: 'user' });
    const after = await run({ fromMs: T0 + 1000, toMs: T0 + 2000, limit: 10, groupBy: 'user' });
    expect([before[0]!.flows, after[0]!.flows]).toEqual([1, 1]);
  });

  it('drops records past their age, then the oldest past the size', async () => {
    const many = Array.from({ length: 50_000 }, (_, i) => flow({ endMs: T0 + i }));
    await store.append(many);
    expect((await store.enforceRetention(T0 + 50_000, { maxAgeMs: 25_000, maxBytes: 1e12 })).deleted).toBe(25_000);
    const size = store.sizeBytes();
    await store.enforceRetention(T0 + 50_000, { maxAgeMs: 1e12, maxBytes: size / 2 });
    const left = await store.count();
    expect(left).toBeLessThan(25_000);
    const oldest = await run({ ...all, order: 'end', limit: 1 });
    expect(oldest[0]!.end_ms).toBe(T0 + 50_000 - left);
  });
});
