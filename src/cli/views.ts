// `ubia users | procs | flows | status`: ask the agent, print JSON (exact) or a table.
import { controlRequest } from '../control/client.js';
import type { FlowRow, FlowsResult, ProcessRow, ProcsResult, StatusResult, UserTotals, UsersResult } from '../control/protocol.js';
import { bytesColumns, humanBytes, humanRate, left, processName, right, table } from './format.js';

export interface ViewOptions {
  socket: string;
  json: boolean;
}

const width = () => process.stdout.columns ?? 200;
const print = (lines: string[]): void => void process.stdout.write(`${lines.join('\n')}\n`);
const printJson = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

export async function showUsers(opts: ViewOptions & { fromMs: number; toMs: number }): Promise<void> {
  const r = await controlRequest<UsersResult>(opts.socket, { op: 'users', from: opts.fromMs, to: opts.toMs });
  if (opts.json) return printJson(r);
  print([
    `usage from ${r.from} to ${r.to} (wire bytes; payload = what processes sent/received)`,
    '',
    ...table<UserTotals>(
      [
        left('USER', (u) => u.user),
        right('UID', (u) => String(u.uid)),
        ...bytesColumns(),
        right('RX pkts', (u) => String(u.rxPackets)),
        right('TX pkts', (u) => String(u.txPackets)),
        right('RX payload', (u) => humanBytes(u.rxPayloadBytes)),
        right('TX payload', (u) => humanBytes(u.txPayloadBytes)),
      ],
      r.users,
      width(),
    ),
    ...(r.unattributed
      ? ['', `unattributed (no local socket owner): RX ${humanBytes(r.unattributed.rxBytes)}, TX ${humanBytes(r.unattributed.txBytes)}`]
      : []),
  ]);
}

export async function showProcs(opts: ViewOptions & { user?: string }): Promise<void> {
  const r = await controlRequest<ProcsResult>(opts.socket, { op: 'procs', user: opts.user });
  if (opts.json) return printJson(r);
  print(
    table<ProcessRow>(
      [
        right('PID', (p) => String(p.pid)),
        left('USER', (p) => p.user),
        left('COMM', (p) => processName(p.pid, p.comm)),
        right('RX/s', (p) => humanRate(p.rxRate)),
        right('TX/s', (p) => humanRate(p.txRate)),
        ...bytesColumns(),
      ],
      r.processes,
      width(),
    ),
  );
}

const PROTOCOLS: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmp6', 132: 'sctp' };
const endpoint = (addr: string, port: number, family: number) => (family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`);

function flowTable(rows: FlowRow[]): string[] {
  return table<FlowRow>(
    [
      left('PROTO', (f) => PROTOCOLS[f.protocol] ?? String(f.protocol)),
      left('LOCAL', (f) => endpoint(f.localAddress, f.localPort, f.family)),
      left('REMOTE', (f) => endpoint(f.remoteAddress, f.remotePort, f.family)),
      left('USER', (f) => f.user),
      right('PID', (f) => String(f.pid)),
      left('COMM', (f) => f.comm),
      ...bytesColumns(),
    ],
    rows,
    width(),
  );
}

export async function showFlows(opts: ViewOptions & { user?: string }): Promise<void> {
  const r = await controlRequest<FlowsResult>(opts.socket, { op: 'flows', user: opts.user });
  if (opts.json) return printJson(r);
  print([`active flows: ${r.active.length}`, ...flowTable(r.active), '', `recently ended: ${r.ended.length}`, ...flowTable(r.ended)]);
}

export async function showStatus(opts: ViewOptions): Promise<void> {
  const r = await controlRequest<StatusResult>(opts.socket, { op: 'status' });
  if (opts.json) return printJson(r);
  const h = r.meter.health;
  const unattributed = r.meter.interfaces.reduce((s, i) => s + i.unattributed.rxBytes + i.unattributed.txBytes, 0);
  print([
    `agent:      running, pid ${r.agent.pid}, up ${r.agent.uptimeSeconds} s, config ${r.agent.configFile ?? '(built-in defaults)'}`,
    `            poll every ${r.agent.pollIntervalSeconds} s, last ${r.agent.lastPollAt ?? 'never'}${r.agent.stalledUntil ? `, STALLED until ${r.agent.stalledUntil}` : ''}, loopback ${r.agent.countLoopback ? 'counted' : 'not counted'}`,
    `kernel:     ${r.meter.kernelRelease}, mode ${r.meter.mode}${r.meter.resumed ? ', resumed pinned state' : ''} (${r.meter.pinDir})`,
    // [x] in use, [ ] this kernel has it but this mode does not use it, [-] this kernel lacks it
    ...r.meter.hooks.map((hk) => `  ${hk.active ? '[x]' : hk.available ? '[ ]' : '[-]'} ${hk.name}: ${hk.detail}`),
    `health:     overflows users ${h.overflows.users}, processes ${h.overflows.processes}, flows ${h.overflows.flows}, interfaces ${h.overflows.interfaces}; events dropped ${h.eventsDropped}`,
    `            unattributed since start of metering: ${humanBytes(unattributed)}`,
    `ledger:     ${r.ledger.path}, ${humanBytes(r.ledger.sizeBytes)}, last flush ${r.ledger.lastFlushAt ?? 'never'}${r.ledger.lastError ? `, ERROR: ${r.ledger.lastError}` : ''}`,
    `exporters:  ${r.exporters.length === 0 ? 'none configured' : ''}`,
    ...r.exporters.map((e) => `  ${e.name}: ${e.state} — ${e.detail} (queued ${e.queued}, dropped ${e.dropped})`),
  ]);
}
