// npm run bench:quota — how closely quota enforcement's throttle (bpf/quota.bpf.c: a token
// bucket per user and direction that drops what exceeds it) holds a user to its rate:
// goodput of one 10 s TCP stream, upload and download, for a few rates, bucket depths and
// congestion controls. docs/architecture.md, "Quota enforcement", has the figures and the
// choice made on them (src/kernel/quota.ts throttleBurstBytes).
import { readFileSync } from 'node:fs';
import { detachMeter } from '../src/kernel/index.js';
import { addon } from '../src/kernel/native.js';
import { createNet, createUser, freePort, removeUser } from '../test/support/testbed.js';
import { bytesBetween, stream } from '../test/support/traffic.js';

const PIN_DIR = '/sys/fs/bpf/ubia-bench-quota';
const SECONDS = 10;
const GSO_FLOOR = 2 * 65_536 + 2 * 1500;

interface Case {
  mbit: number;
  /** the bucket's depth, in seconds of the rate (floored at two GSO packets) */
  burstSeconds: number;
}
const CASES: Case[] = [
  { mbit: 2, burstSeconds: 0.25 },
  { mbit: 8, burstSeconds: 0 },
  { mbit: 8, burstSeconds: 0.25 },
  { mbit: 100, burstSeconds: 0.25 },
];
const CCS = (process.env.BENCH_CC ?? 'cubic,bbr').split(',');
const DEFAULT_CC = `${readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim()} (default)`;

async function main() {
  const user = createUser('ubia-b');
  const net = createNet();
  const quota = new addon.QuotaEnforcer({ pinDir: PIN_DIR });
  const rows = [];
  try {
    for (const c of CASES) {
      const rateBytes = (c.mbit * 1e6) / 8;
      const burstBytes = Math.max(Math.ceil(rateBytes * c.burstSeconds), GSO_FLOOR);
      quota.set({ uid: user.uid, action: 'throttle', rateBytes, burstBytes, untilMs: Date.now() + 3_600_000 });
      // uploads leave as the test user, who may use only the host's allowed congestion
      // controls: its default; downloads are sent by root in the namespace, with each
      const runs: Array<['u' | 'd', string]> = [['u', ''], ...CCS.map((cc): ['d', string] => ['d', cc])];
      for (const [mode, cc] of runs) {
        process.env.TCP_CC = cc;
        const r = await stream({ mode, seconds: SECONDS, client: { user }, server: { net }, serverHost: '::', connectHost: net.peerV4, port: await freePort() });
        const goodput = (bytesBetween(r.samples!, 0, SECONDS) * 8) / SECONDS / 1e6;
        rows.push({ rate: `${c.mbit} Mbit/s`, burst: `${(burstBytes / 1024).toFixed(0)} KiB`, cc: cc || DEFAULT_CC, direction: mode === 'u' ? 'upload' : 'download', 'goodput Mbit/s': +goodput.toFixed(2), 'of rate %': +((goodput / c.mbit) * 100).toFixed(1) });
        process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
      }
      quota.clear(user.uid);
    }
    console.table(rows);
    console.log(JSON.stringify({ seconds: SECONDS, rows }));
  } finally {
    delete process.env.TCP_CC;
    quota.close(true);
    detachMeter(PIN_DIR);
    net.remove();
    removeUser(user);
  }
}

await main();
