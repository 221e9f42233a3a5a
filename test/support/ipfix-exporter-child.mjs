// The IPFIX exporter of the built agent (dist/) in a process of its own, so a test can
// kill -9 it mid-send. Hands it flows that only sent (one record each, the local port
// numbers them), then prints its status as a JSON line every 50 ms.
//   node ipfix-exporter-child.mjs '<IpfixConfig as JSON>' <spool dir> <first port> <count>
import pino from 'pino';
import { createIpfixExporter } from '../../dist/export/ipfix/index.js';

const [configJson, spoolDir, first, count] = process.argv.slice(2);
const exporter = createIpfixExporter(JSON.parse(configJson), { logger: pino({ level: 'silent' }), spoolDir });
const now = Date.now();
for (let port = Number(first); port < Number(first) + Number(count); port++) {
  exporter.flowEnded({
    cookie: BigInt(port), family: 4, protocol: 6,
    localAddress: '127.0.0.1', localPort: port, remoteAddress: '127.0.0.2', remotePort: 443,
    uid: 1001, gid: 1001, pid: 4242, comm: 'curl', cgroupId: 1234n, scope: 'loopback',
    firstSeenMs: now - 5000, lastSeenMs: now,
    rxBytes: 0, txBytes: 1000 + port, rxPackets: 0, txPackets: 1, rxPayloadBytes: 0, txPayloadBytes: 0,
    user: 'ubia-test-alice',
  });
}
setInterval(() => process.stdout.write(`${JSON.stringify(exporter.status())}\n`), 50);
