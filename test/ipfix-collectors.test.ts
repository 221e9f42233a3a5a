// Independent collectors decode ubia's enterprise user fields with the definitions shipped
// in packaging/ipfix/: libfixbuf's ipfixDump (-e ubia-elements.xml, on the bytes a TCP
// collector received), python3-ipfix's ipfix2csv collecting over TCP (--spec ubia.iespec)
// and pmacct's nfacctd collecting over UDP (aggregate_primitives ubia.primitives).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cgroup2Mount } from '../src/kernel/cgroups.js';
import { DEFAULT_WORKLOAD_RULES, workloadNamer } from '../src/core/workload.js';
import { fixbufXml, pmacctPrimitives, pythonIpfixSpec } from '../src/export/ipfix/definitions.js';
import { createIpfixExporter } from '../src/export/ipfix/index.js';
import { freePort, tempDir } from './support/testbed.js';
import { waitFor } from './support/wait.js';
import { flowSnapshot, ipfixConfig, ipfixDump, silentLogger, startIpfix2csv, tcpSink } from './support/ipfix.js';

const packaging = join(import.meta.dirname, '..', 'packaging', 'ipfix');
let dir: string;
beforeEach(() => { dir = tempDir('ubia-ipfix-collectors-'); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const alice = () => flowSnapshot({
  user: 'ubia-test-alice', uid: 60001, gid: 60100, pid: 31337, comm: 'ubia-curl', cgroupId: 0xabcdef12345n,
  family: 6, localAddress: '::1', localPort: 43001, remoteAddress: '::1', remotePort: 8080, txBytes: 4321, txPackets: 9, txPayloadBytes: 3000,
});

describe('shipped IE definitions', () => {
  it('match what the code exports for the default PEN and element IDs', () => {
    const c = ipfixConfig({ collectors: [{ address: 'x' }] });
    const o = { pen: c.enterprise_number, ids: c.element_ids };
    expect(readFileSync(join(packaging, 'ubia-elements.xml'), 'utf8')).toBe(fixbufXml(o));
    expect(readFileSync(join(packaging, 'ubia.iespec'), 'utf8')).toBe(pythonIpfixSpec(o));
    expect(readFileSync(join(packaging, 'ubia.primitives'), 'utf8')).toBe(pmacctPrimitives(o));
  });
});

describe('second collectors decode the enterprise user fields', () => {
  it('ipfixDump -e (libfixbuf), with a non-default PEN and element IDs', async () => {
    const port = await freePort();
    const sink = await tcpSink(port);
    const section = { enterprise_number: 4_000_000_001, element_ids: { uid: 100, process_name: 104 }, collectors: [{ address: '127.0.0.1', port, transport: 'tcp' }] };
    const cfg = ipfixConfig(section);
    const exporter = createIpfixExporter(cfg, { logger: silentLogger, spoolDir: dir });
    // a real cgroup for alice's process, so the exporter has a path to name
    const cgroup = join(cgroup2Mount()!, `ubia-ipfix-collectors-${process.pid}.service`);
    let statCgroupId = 0n;
    mkdirSync(cgroup);
    try {
      statCgroupId = statSync(cgroup, { bigint: true }).ino;
      exporter.flowEnded({ ...alice(), cgroupId: statCgroupId, workload: workloadNamer(DEFAULT_WORKLOAD_RULES)(cgroup.slice(cgroup2Mount()!.length)) });
    } finally {
      rmdirSync(cgroup);
    }
    const now = Date.now();
    exporter.usage({ startMs: now - 60_000, endMs: now, users: [
      { uid: 60001, user: 'ubia-test-alice', rxBytes: 11, txBytes: 22, rxPackets: 33, txPackets: 44, rxPayloadBytes: 55, txPayloadBytes: 66 },
    ] });
    await exporter.close();
    await sink.close();
    const file = join(dir, 'export.ipfix');
    writeFileSync(file, sink.bytes());
    const xml = join(dir, 'elements.xml');
    writeFileSync(xml, fixbufXml({ pen: cfg.enterprise_number, ids: cfg.element_ids }));

    const { messages, text } = await ipfixDump(file, xml);
    expect(text).toContain('ent: 4000000001  id:   100  type: uint32');
    const records = messages.flatMap((m) => m.records);
    expect(records).toHaveLength(2);
    expect(records[0]).toMatchObject({
      sourceIPv6Address: '::0001', sourceTransportPort: '43001', destinationTransportPort: '8080', flowDirection: '1',
      octetDeltaCount: '4321', packetDeltaCount: '9', transportOctetDeltaCount: '3000',
      userName: 'ubia-test-alice', ubiaUserId: '60001', ubiaGroupId: '60100', ubiaProcessId: '31337',
      ubiaCgroupId: String(statCgroupId), ubiaProcessName: 'ubia-curl', ubiaCgroupPath: `/ubia-ipfix-collectors-${process.pid}.service`,
      ubiaUnitName: `ubia-ipfix-collectors-${process.pid}.service`,
    });
    expect(records[1]).toMatchObject({
      userName: 'ubia-test-alice', ubiaUserId: '60001', ubiaWireOctetsIn: '11', ubiaWireOctetsOut: '22', ubiaWirePacketsIn: '33',
      ubiaWirePacketsOut: '44', ubiaPayloadOctetsIn: '55', ubiaPayloadOctetsOut: '66',
    });
  });

  it('ipfix2csv --collect tcp (python3-ipfix)', async () => {
    const port = await freePort();
    const columns = ['userName', 'ubiaUserId', 'ubiaGroupId', 'ubiaProcessId', 'ubiaProcessName', 'ubiaCgroupId', 'ubiaUnitName', 'octetDeltaCount', 'flowDirection'];
    const collector = await startIpfix2csv(port, join(packaging, 'ubia.iespec'), columns);
    try {
      const exporter = createIpfixExporter(ipfixConfig({ collectors: [{ address: '127.0.0.1', port, transport: 'tcp', records: ['flows'] }] }), { logger: silentLogger, spoolDir: dir });
      exporter.flowEnded({ ...alice(), workload: workloadNamer(DEFAULT_WORKLOAD_RULES)('/system.slice/slurmstepd.scope/job_4242/step_batch') });
      exporter.flowEnded(flowSnapshot({ user: 'ubia-test-bob', uid: 60002, gid: 60002, pid: 7, comm: 'ssh', cgroupId: 99n, rxBytes: 10, rxPackets: 1, workload: undefined }));
      await waitFor(`ipfix2csv to print the records (${collector.lines().join(' ')})`, () => collector.lines().length >= 3, 10_000);
      await exporter.close();
    } finally {
      collector.stop();
    }
    expect(collector.lines()).toEqual([
      columns.map((c) => `"${c}"`).join(','),
      `"ubia-test-alice","60001","60100","31337","ubia-curl","${0xabcdef12345}","job_4242/step_batch","4321","1"`,
      '"ubia-test-bob","60002","60002","7","ssh","99","","10","0"', // a flow the agent named no unit for
    ]);
  });

  it('nfacctd (pmacct) with the shipped aggregate_primitives', async () => {
    const port = await freePort();
    const csv = join(dir, 'nfacctd.csv');
    const conf = join(dir, 'nfacctd.conf');
    const logFile = join(dir, 'nfacctd.log');
    writeFileSync(conf, [
      'daemonize: false', `logfile: ${logFile}`, `nfacctd_ip: 127.0.0.1`, `nfacctd_port: ${port}`,
      `aggregate_primitives: ${join(packaging, 'ubia.primitives')}`,
      'aggregate: src_host, dst_host, src_port, dst_port, proto, ubiauserid, ubiagroupid, ubiaprocessid, ubiacgroupid, ubiaprocessname',
      'plugins: print', 'print_output: csv', `print_output_file: ${csv}`, 'print_refresh_time: 1', '',
    ].join('\n'));
    // its own process group: nfacctd forks plugin processes, and ignores SIGTERM at times
    const collector = spawn('nfacctd', ['-f', conf], { detached: true, stdio: 'ignore' });
    const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
    try {
      // ready once its print plugin ran a first purge: records that reach nfacctd while the
      // plugin is still starting are not printed
      await waitFor('nfacctd to start', () => log().includes('Purging cache - END'), 10_000);
      const exporter = createIpfixExporter(ipfixConfig({ collectors: [{ address: '127.0.0.1', port, records: ['flows'] }] }), { logger: silentLogger, spoolDir: dir });
      exporter.flowEnded(alice());
      await exporter.close();
      await waitFor(`nfacctd to write the record (${log()})`, () => existsSync(csv) && readFileSync(csv, 'utf8').includes('ubia-curl'), 10_000);
    } finally {
      process.kill(-collector.pid!, 'SIGKILL');
    }
    expect(readFileSync(csv, 'utf8').trim().split('\n')).toEqual([
      'SRC_IP,DST_IP,SRC_PORT,DST_PORT,PROTOCOL,ubiauserid,ubiagroupid,ubiaprocessid,ubiacgroupid,ubiaprocessname,PACKETS,BYTES',
      `::1,::1,43001,8080,tcp,60001,60100,31337,${0xabcdef12345},ubia-curl,9,4321`,
    ]);
  });

  it('ipfixDump sees remote addresses anonymised with Crypto-PAn and no process names', async () => {
    const port = await freePort();
    const sink = await tcpSink(port);
    const keyFile = join(dir, 'cryptopan.key');
    // the Crypto-PAn reference key, as 64 hex digits
    writeFileSync(keyFile, '1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202\n');
    const exporter = createIpfixExporter(ipfixConfig({
      collectors: [{ address: '127.0.0.1', port, transport: 'tcp', anonymize: 'cryptopan', cryptopan_key_file: keyFile, process_names: false }],
    }), { logger: silentLogger, spoolDir: dir });
    exporter.flowEnded(flowSnapshot({ localAddress: '10.0.0.5', remoteAddress: '128.11.68.132', txBytes: 10, txPackets: 1, comm: 'secret-tool' }));
    await exporter.close();
    await sink.close();
    const file = join(dir, 'export.ipfix');
    writeFileSync(file, sink.bytes());
    const records = (await ipfixDump(file, join(packaging, 'ubia-elements.xml'))).messages.flatMap((m) => m.records);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ sourceIPv4Address: '10.0.0.5', destinationIPv4Address: '135.242.180.132' });
    expect(records[0]!.ubiaProcessName).toBeUndefined();
  });

  it('refuses a Crypto-PAn key file it cannot use, saying how to make one', () => {
    const keyFile = join(dir, 'short.key');
    writeFileSync(keyFile, 'too short');
    const make = (path: string) => () => createIpfixExporter(ipfixConfig({
      collectors: [{ address: '127.0.0.1', transport: 'udp', anonymize: 'cryptopan', cryptopan_key_file: path }],
    }), { logger: silentLogger, spoolDir: dir });
    expect(make(keyFile)).toThrow(/needs exactly 32 raw bytes or 64 hex digits/);
    expect(make(join(dir, 'missing.key'))).toThrow(/head -c 32 \/dev\/urandom/);
  });
});
