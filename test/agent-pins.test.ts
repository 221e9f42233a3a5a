// The meter's pins as they get lost in real life (issue 12, item 7), with the real agent,
// real kernel, a test user's traffic over a veth to a netns: the pin directory removed
// under a running agent, the pins removed while it is stopped (tc filters of the old
// programs stay on the interfaces), a second agent on the same pin directory, and a
// changed agent.flow_capacity on resume.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusResult, UsersResult } from '../src/control/protocol.js';
import { CLI, cli, startAgent, writeAgentConfig, type AgentProcess } from './support/agent.js';
import { createTestbed, type Testbed, type TestUser } from './support/testbed.js';
import { sinkTraffic } from './support/traffic.js';
import { waitFor } from './support/wait.js';

let bed: Testbed;
let alice: TestUser;

beforeAll(async () => {
  bed = await createTestbed('pins', { users: 1, sinkPort: 9300 + (process.pid % 500) });
  alice = bed.users[0]!;
}, 60_000);

afterAll(async () => {
  await bed?.remove();
});

const json = <T>(agent: AgentProcess, args: string[]): T => {
  const r = cli(agent.socket, [...args, '--json']);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as T;
};
const payloadOf = (agent: AgentProcess) => {
  const row = json<UsersResult>(agent, ['users', '--since', '1h']).users.find((u) => u.uid === alice.uid);
  return { tx: row?.txPayloadBytes ?? 0, rx: row?.rxPayloadBytes ?? 0 };
};
const traffic = (send: number, reply: number) => sinkTraffic(alice, { host: bed.net.peerV4, port: bed.sink.port, send, reply, ms: 300 });

/** Sends `send` bytes (and gets `reply` back) as alice; resolves once the ledger shows them all. */
async function expectBooked(agent: AgentProcess, send: number, reply: number) {
  const before = payloadOf(agent);
  await traffic(send, reply);
  await waitFor(`alice's ${send} bytes in the ledger`, () => {
    const now = payloadOf(agent);
    return now.tx - before.tx === send + 8 && now.rx - before.rx === reply ? true : undefined;
  });
}

describe('pins', () => {
  it('removing the pin directory of a running agent: pinned again, logged, shown in status, metering goes on', async () => {
    const agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    try {
      await expectBooked(agent, 100_000, 50_000);
      rmSync(bed.pinDir, { recursive: true, force: true });
      await waitFor('the agent to pin again', () => (agent.logs().includes('pins were removed while the agent ran: pinned again') ? true : undefined));
      expect(existsSync(join(bed.pinDir, 'maps', 'meta'))).toBe(true);
      const pins = json<StatusResult>(agent, ['status']).meter.hooks.find((h) => h.name === 'pins');
      expect(pins).toMatchObject({ active: true, detail: expect.stringMatching(/lost its pins 1 time\(s\).*pinned again/) });
      await expectBooked(agent, 1_000_000, 10_000);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
    // what was pinned again is what the next agent resumes: counting went on meanwhile
    const next = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    try {
      expect(json<StatusResult>(next, ['status']).meter.resumed).toBe(true);
      await expectBooked(next, 200_000, 0);
    } finally {
      expect(await next.stop()).toBe(0);
    }
  }, 120_000);

  it('pins removed while the agent is stopped: the old tc programs left on the interface are not taken for ours', async () => {
    rmSync(bed.pinDir, { recursive: true, force: true });
    const agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    try {
      expect(json<StatusResult>(agent, ['status']).meter.resumed).toBe(false);
      await traffic(500_000, 500_000);
      const iface = await waitFor('tc totals of the veth', () => {
        const i = json<StatusResult>(agent, ['status']).meter.interfaces.find((x) => x.name === bed.net.hostInterface);
        return i && i.total.txBytes > 500_000 && i.total.rxBytes > 500_000 ? i : undefined;
      });
      expect(iface.attributed.txBytes).toBeGreaterThan(500_000);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 120_000);

  it('a second agent on the same pin directory is refused with a clear message; the first goes on', async () => {
    const first = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    const otherDir = join(bed.dir, 'second');
    try {
      mkdirSync(otherDir);
      const second = spawnSync(process.execPath, [CLI, 'agent', '--config', writeAgentConfig({ dir: otherDir, pinDir: bed.pinDir })], { encoding: 'utf8', timeout: 30_000 });
      expect(second.status).toBe(1);
      expect(second.stderr).toMatch(/another ubia agent is metering with the pin directory .*: stop it, or give this agent another agent\.pin_dir/);
      await expectBooked(first, 300_000, 0);
    } finally {
      expect(await first.stop()).toBe(0);
    }
  }, 120_000);

  it('a changed agent.flow_capacity on resume is said, not silently ignored', async () => {
    const agent = await startAgent({ dir: bed.dir, pinDir: bed.pinDir });
    const inUse = json<StatusResult>(agent, ['status']).meter;
    expect(await agent.stop()).toBe(0);
    const resized = await startAgent({ dir: bed.dir, pinDir: bed.pinDir, flowCapacity: 4096 });
    try {
      expect(resized.logs()).toMatch(/"configured":4096,"inUse":65536.*agent\.flow_capacity is not applied: the running meter keeps its pinned flow table; to resize, stop the agent, run `ubia detach`/);
      expect(inUse.resumed).toBe(true);
    } finally {
      expect(await resized.stop()).toBe(0);
    }
  }, 120_000);
});
