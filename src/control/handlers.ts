// Answers control requests from the agent's state. Visibility: root and members of the
// admin group see everything; anyone else sees only their own uid's usage, processes and
// flows (and not the host-wide unattributed figures).
import type { ExporterStatus, FlowSnapshot } from '../export/types.js';
import type { Accounting, ProcessView } from '../agent/accounting.js';
import type { MeterReader } from '../agent/meter.js';
import type { NameCache } from '../agent/names.js';
import { addInto, zeroCounters } from '../agent/counters.js';
import { UNATTRIBUTED_UID, type Ledger } from '../ledger/ledger.js';
import type { FlowStore } from '../history/store.js';
import { queryFlows } from './history.js';
import { ControlError, type Caller, type RequestHandler } from './server.js';
import { localDayStart } from './day.js';
import type { FlowRow, ProcessRow, StatusResult, TopResult, TopUser, UserTotals, UsersResult } from './protocol.js';

export interface AgentView {
  accounting: Accounting;
  ledger: Ledger;
  /** the flow store; undefined when [history] is off or it did not open */
  history: FlowStore | undefined;
  meter: MeterReader;
  names: NameCache;
  configFile: string | undefined;
  pollIntervalSeconds(): number;
  countLoopback(): boolean;
  exporters(): ExporterStatus[];
  isAdmin(caller: Caller): boolean;
  /** times in ms since the epoch */
  times(): { startedAt: number; lastPollAt?: number; stalledUntil?: number; lastFlushAt?: number };
  lastFlushError(): string | undefined;
  stall(ms: number): void;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

const matchesUser = (query: string | undefined, uid: number, user: string) =>
  query === undefined || query === String(uid) || query === user;

const byRateThenBytes = (a: ProcessView, b: ProcessView) =>
  b.rxRate + b.txRate - (a.rxRate + a.txRate) || b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes);

function processRow(p: ProcessView): ProcessRow {
  return {
    uid: p.uid,
    user: p.user,
    pid: p.pid,
    comm: p.comm,
    rxBytes: p.rxBytes,
    txBytes: p.txBytes,
    rxPackets: p.rxPackets,
    txPackets: p.txPackets,
    rxPayloadBytes: p.rxPayloadBytes,
    txPayloadBytes: p.txPayloadBytes,
    rxRate: Math.round(p.rxRate),
    txRate: Math.round(p.txRate),
  };
}

/** gid and cgroupId are left out (for exporters); identity and times made JSON-safe. */
function flowRow(f: FlowSnapshot): FlowRow {
  const { cookie, gid, cgroupId, firstSeenMs, lastSeenMs, ...rest } = f;
  return { ...rest, cookie: cookie.toString(), firstSeen: new Date(firstSeenMs).toISOString(), lastSeen: new Date(lastSeenMs).toISOString() };
}

/** Per-user totals (counted scopes merged) and the unattributed total over a time range. */
function usageTotals(view: AgentView, fromMs: number, toMs: number) {
  const users = new Map<number, UserTotals>();
  const unattributed = zeroCounters();
  for (const t of view.ledger.totals(fromMs, toMs)) {
    if (t.scope === 'loopback' && !view.countLoopback()) continue;
    if (t.uid === UNATTRIBUTED_UID) {
      addInto(unattributed, t);
      continue;
    }
    let u = users.get(t.uid);
    if (!u) {
      u = { uid: t.uid, user: view.names.name(t.uid), ...zeroCounters() };
      users.set(t.uid, u);
    }
    addInto(u, t);
  }
  return { users, unattributed };
}

export function createRequestHandler(view: AgentView): RequestHandler {
  return (req, caller) => {
    const admin = view.isAdmin(caller);
    const visible = (uid: number) => admin || uid === caller.uid;
    switch (req.op) {
      case 'users': {
        if (req.to < req.from) throw new ControlError('bad_request', '"to" is before "from"');
        const { users, unattributed } = usageTotals(view, req.from, req.to);
        const rows = [...users.values()]
          .filter((u) => visible(u.uid))
          .sort((a, b) => b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes) || a.uid - b.uid);
        const result: UsersResult = {
          from: new Date(req.from).toISOString(),
          to: new Date(req.to).toISOString(),
          users: rows,
          unattributed: admin
            ? { rxBytes: unattributed.rxBytes, txBytes: unattributed.txBytes, rxPackets: unattributed.rxPackets, txPackets: unattributed.txPackets }
            : null,
        };
        return result;
      }
      case 'procs':
        view.accounting.watchProcesses(Date.now());
        return {
          processes: view.accounting
            .processList()
            .filter((p) => visible(p.uid) && matchesUser(req.user, p.uid, p.user))
            .sort(byRateThenBytes)
            .map(processRow),
        };
      case 'flows': {
        const keep = (f: FlowSnapshot) => visible(f.uid) && matchesUser(req.user, f.uid, f.user);
        view.accounting.refreshFlows(Date.now());
        return {
          active: view.accounting.activeFlows().filter(keep).map(flowRow),
          ended: view.accounting.endedFlows().filter(keep).map(flowRow),
        };
      }
      case 'flows.query':
        return queryFlows(view.history, req, admin ? undefined : caller.uid);
      case 'top': {
        const now = Date.now();
        const dayStart = localDayStart(now);
        const { users } = usageTotals(view, dayStart, now + 1);
        const rates = view.accounting.rates();
        view.accounting.watchProcesses(now);
        const procs = view.accounting.processList();
        const uids = new Set([...users.keys(), ...rates.keys()].filter((uid) => uid !== UNATTRIBUTED_UID && visible(uid)));
        const rows: TopUser[] = [...uids].map((uid) => {
          const rate = rates.get(uid);
          const today = users.get(uid);
          return {
            uid,
            user: view.names.name(uid),
            rxRate: Math.round(rate?.rxRate ?? 0),
            txRate: Math.round(rate?.txRate ?? 0),
            rxBytesToday: today?.rxBytes ?? 0,
            txBytesToday: today?.txBytes ?? 0,
            processes: procs
              .filter((p) => p.uid === uid)
              .sort(byRateThenBytes)
              .slice(0, req.processes)
              .map(processRow),
          };
        });
        rows.sort(
          (a, b) =>
            b.rxRate + b.txRate - (a.rxRate + a.txRate) ||
            b.rxBytesToday + b.txBytesToday - (a.rxBytesToday + a.txBytesToday) ||
            a.uid - b.uid,
        );
        const result: TopResult = {
          at: new Date(now).toISOString(),
          dayStart: new Date(dayStart).toISOString(),
          pollIntervalSeconds: view.pollIntervalSeconds(),
          users: rows,
        };
        return result;
      }
      case 'status': {
        const t = view.times();
        const st = view.meter.status();
        const result: StatusResult = {
          agent: {
            pid: process.pid,
            startedAt: new Date(t.startedAt).toISOString(),
            uptimeSeconds: Math.round((Date.now() - t.startedAt) / 1000),
            configFile: view.configFile ?? null,
            pollIntervalSeconds: view.pollIntervalSeconds(),
            countLoopback: view.countLoopback(),
            lastPollAt: iso(t.lastPollAt),
            stalledUntil: t.stalledUntil !== undefined && t.stalledUntil > Date.now() ? iso(t.stalledUntil) : null,
            you: { uid: caller.uid, admin },
          },
          meter: {
            kernelRelease: st.kernelRelease,
            mode: st.mode,
            hooks: st.hooks,
            pinDir: st.pinDir,
            resumed: st.resumed,
            health: view.meter.health(),
            interfaces: view.meter.readInterfaces(),
          },
          ledger: {
            path: view.ledger.path,
            sizeBytes: view.ledger.sizeBytes(),
            lastFlushAt: iso(t.lastFlushAt),
            lastError: view.lastFlushError() ?? null,
          },
          exporters: view.exporters(),
        };
        return result;
      }
      case 'debug.stall':
        if (caller.uid !== 0) throw new ControlError('forbidden', 'debug.stall is for root only (it is a test switch)');
        view.stall(req.ms);
        return { stalledMs: req.ms };
    }
  };
}
