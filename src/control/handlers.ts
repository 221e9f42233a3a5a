// Answers control requests from the agent's state. Visibility: root and members of the
// admin group see everything; anyone else sees only their own uid's usage, processes and
// flows (and not the host-wide unattributed figures); of `status` they see the agent's
// health, not file paths or per-interface totals. Names are looked up only for the rows a
// reply holds, within NAME_BUDGET_MS (NSS may be LDAP, and the event loop is everyone's).
import type { ExporterStatus, FlowSnapshot } from '../export/types.js';
import type { Meter } from '../kernel/index.js';
import { addInto, zeroCounters } from '../core/counters.js';
import { UNATTRIBUTED_UID, type Ledger } from '../ledger/ledger.js';
import { redactDeep } from '../core/redact.js';
import { StreamedResult, type Caller, type RequestHandler } from './server.js';
import { localDayStart } from './day.js';
import type { FlowRow, ProcessRow, StatusResult, TopResult, TopUser, UserTotals, UsersResult } from './protocol.js';

/** What the control API reads of the agent's live accounting: this much, declared here, so
 *  control/ depends on no class of the agent's (its Accounting provides it). */
export interface LiveAccounting {
  rates(): Map<number, { rxRate: number; txRate: number }>;
  /** live processes, already in the protocol's row shape */
  processList(): ProcessRow[];
  activeFlows(): FlowSnapshot[];
  endedFlows(): FlowSnapshot[];
  /** reads the flow table now (a `flows` request wants it fresh) */
  refreshFlows(nowMs: number): void;
  /** keeps the per-process reads going while someone watches (`ubia top`) */
  watchProcesses(nowMs: number): void;
}

export interface AgentView {
  accounting: LiveAccounting;
  ledger: Pick<Ledger, 'path' | 'sizeBytes' | 'totals'>;
  meter: Pick<Meter, 'status' | 'health' | 'readInterfaces'>;
  names: {
    name(uid: number): string;
    /** a namer for one reply: NSS look-ups for at most `budgetMs` in all, the rest as uids */
    within(budgetMs: number): (uid: number) => string;
  };
  configFile: string | undefined;
  pollIntervalSeconds(): number;
  countLoopback(): boolean;
  exporters(): ExporterStatus[];
  isAdmin(caller: Caller): boolean;
  /** times in ms since the epoch */
  times(): { startedAt: number; lastPollAt?: number; lastFlushAt?: number };
  lastFlushError(): string | undefined;
}

/** NSS time one reply may spend naming its rows; the rest show uids until looked up */
const NAME_BUDGET_MS = 50;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

const matchesUser = (query: string | undefined, uid: number, user: string) =>
  query === undefined || query === String(uid) || query === user;

const byRateThenBytes = (a: ProcessRow, b: ProcessRow) =>
  b.rxRate + b.txRate - (a.rxRate + a.txRate) || b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes);

function processRow(p: ProcessRow): ProcessRow {
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

/** Per-user totals (counted scopes merged; named later, only those shown) and the
 *  unattributed total over a time range; `onlyUid`: of that user alone. */
function usageTotals(view: AgentView, fromMs: number, toMs: number, onlyUid?: number) {
  const users = new Map<number, UserTotals>();
  const unattributed = zeroCounters();
  for (const t of view.ledger.totals(fromMs, toMs, onlyUid)) {
    if (t.scope === 'loopback' && !view.countLoopback()) continue;
    if (t.uid === UNATTRIBUTED_UID) {
      addInto(unattributed, t);
      continue;
    }
    let u = users.get(t.uid);
    if (!u) {
      u = { uid: t.uid, user: '', ...zeroCounters() };
      users.set(t.uid, u);
    }
    addInto(u, t);
  }
  return { users, unattributed };
}

/** The `limit` flows with the most bytes (all of them, in table order, without a limit). */
function biggest(flows: FlowSnapshot[], limit: number | undefined): FlowSnapshot[] {
  if (limit === undefined || flows.length <= limit) return flows;
  return flows.sort((a, b) => b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes)).slice(0, limit);
}

/** The uids a caller may see: all for root and admins (`onlyUid` undefined), else their own. */
function visibleUids(caller: Caller, admin: boolean) {
  return { visible: (uid: number) => admin || uid === caller.uid, onlyUid: admin ? undefined : caller.uid };
}

/** `status` as a non-admin sees it: the agent's health, without the fields that name files
 *  or show host-wide traffic (per-interface totals at poll resolution and the users beyond
 *  the user table show others' traffic),
 *  exporters without their detail, and a flush error only as the fact that there is one. */
function redactStatusForNonAdmin(s: StatusResult): StatusResult {
  return {
    agent: { ...s.agent, configFile: null },
    meter: { ...s.meter, pinDir: null, interfaces: null, health: { ...s.meter.health, beyondUserTable: null } },
    ledger: {
      ...s.ledger,
      path: null,
      sizeBytes: null,
      lastError: s.ledger.lastError === null ? null : 'ledger writes fail (an admin sees why in ubia status)',
    },
    exporters: s.exporters.map(({ name, state, queued, dropped }) => ({ name, state, detail: '', queued, dropped })),
  };
}

export function createRequestHandler(view: AgentView): RequestHandler {
  return (req, caller) => {
    const admin = view.isAdmin(caller);
    const { visible, onlyUid } = visibleUids(caller, admin);
    switch (req.op) {
      case 'users': {
        const { users, unattributed } = usageTotals(view, req.from, req.to, onlyUid);
        const name = view.names.within(NAME_BUDGET_MS);
        const rows = [...users.values()]
          .filter((u) => visible(u.uid))
          .sort((a, b) => b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes) || a.uid - b.uid);
        for (const r of rows) r.user = name(r.uid);
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
        const active = view.accounting.activeFlows().filter(keep);
        const ended = view.accounting.endedFlows().filter(keep);
        // 65,536 flows are ≈ 23 MB of JSON: the rows are serialized a slice per turn
        return new StreamedResult(
          { activeTotal: active.length, endedTotal: ended.length },
          { active: { items: biggest(active, req.limit), row: flowRow }, ended: { items: biggest(ended, req.limit), row: flowRow } },
        );
      }
      case 'top': {
        const now = Date.now();
        const dayStart = localDayStart(now);
        const { users } = usageTotals(view, dayStart, now + 1, onlyUid);
        const rates = view.accounting.rates();
        view.accounting.watchProcesses(now);
        const procs = view.accounting.processList();
        const uids = new Set([...users.keys(), ...rates.keys()].filter((uid) => uid !== UNATTRIBUTED_UID && visible(uid)));
        const name = view.names.within(NAME_BUDGET_MS);
        const rows: TopUser[] = [...uids].map((uid) => {
          const rate = rates.get(uid);
          const today = users.get(uid);
          return {
            uid,
            user: name(uid),
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
        return redactDeep(admin ? result : redactStatusForNonAdmin(result));
      }
    }
  };
}
