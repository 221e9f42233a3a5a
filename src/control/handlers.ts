// Answers control requests from the agent's state. What a caller sees is decided by their
// Scope (scope.ts) alone: each op gets it once, filters every row through it and shows
// host-wide figures only where it allows; of `status`, a caller without an admin's role sees
// the agent's health, not file paths or per-interface totals. Names are looked up only for
// the rows a reply holds, within NAME_BUDGET_MS (NSS may be LDAP, and the event loop is
// everyone's).
import type { ExporterStatus, FlowSnapshot } from '../export/types.js';
import type { Meter } from '../kernel/index.js';
import { UNATTRIBUTED_UID, type Ledger } from '../ledger/ledger.js';
import { addInto, zeroCounters } from '../core/counters.js';
import { redactDeep } from '../core/redact.js';
import type { FlowStore } from '../history/store.js';
import { queryFlows } from './history.js';
import { StreamedResult, type Caller, type RequestHandler } from './server.js';
import type { Directory, Scope } from './scope.js';
import { quotaRequest, type QuotaControl } from './quota.js';
import { localDayStart } from './day.js';
import { report } from './report.js';
import { countedRange, unattributedFor, visibleUsage } from './usage.js';
import type { FlowRow, ProcessRow, StatusResult, TopResult, TopUser, UnitRow, UnitsResult, UsersResult } from './protocol.js';
import { workloadGroup, type Workload, type WorkloadGrouping } from '../core/workload.js';

/** What the control API reads of the agent's live accounting: this much, declared here, so
 *  control/ depends on no class of the agent's (its Accounting provides it). */
export interface LiveAccounting {
  rates(): Map<number, { rxRate: number; txRate: number; rxPayloadRate: number; txPayloadRate: number }>;
  /** live processes, already in the protocol's row shape */
  processList(): ProcessRow[];
  activeFlows(): FlowSnapshot[];
  endedFlows(): FlowSnapshot[];
  /** reads the flow table now (a `flows` request wants it fresh) */
  refreshFlows(nowMs: number): void;
  /** keeps the per-process reads going while someone watches (`ubia top`) */
  watchProcesses(nowMs: number): void;
  /** per (user, workload): the rates of the last settle */
  workloadRates(): Array<{ uid: number; workload: Workload; rxRate: number; txRate: number; rxPayloadRate: number; txPayloadRate: number }>;
  /** a cgroup path named by the units rules in force */
  nameWorkload(cgroupPath: string): Workload;
}

export interface AgentView {
  accounting: LiveAccounting;
  ledger: Pick<Ledger, 'path' | 'sizeBytes' | 'periodTotals' | 'unitTotals' | 'countedRange'>;
  /** the flow store; undefined when [history] is off or it did not open */
  history: FlowStore | undefined;
  meter: Pick<Meter, 'status' | 'health' | 'readInterfaces'>;
  names: {
    name(uid: number): string;
    /** a namer for one reply: NSS look-ups for at most `budgetMs` in all, the rest as uids */
    within(budgetMs: number): (uid: number) => string;
  };
  quotas: QuotaControl;
  directory: Pick<Directory, 'userByName'>;
  configFile: string | undefined;
  pollIntervalSeconds(): number;
  countLoopback(): boolean;
  exporters(): ExporterStatus[];
  /** the one visibility decision (scope.ts) */
  scopeOf(caller: Caller): Scope;
  /** times in ms since the epoch */
  times(): { startedAt: number; lastPollAt?: number; lastFlushAt?: number };
  lastFlushError(): string | undefined;
}

/** NSS time one reply may spend naming its rows; the rest show uids until looked up */
const NAME_BUDGET_MS = 50;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

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
    rxPayloadRate: Math.round(p.rxPayloadRate),
    txPayloadRate: Math.round(p.txPayloadRate),
  };
}

/** gid and the cgroup are left out (for exporters) but the workload's name; identity and
 *  times made JSON-safe. */
function flowRow(f: FlowSnapshot): FlowRow {
  const { cookie, gid, cgroupId, workload, firstSeenMs, lastSeenMs, ...rest } = f;
  return { ...rest, cookie: cookie.toString(), unit: workload?.name ?? '', firstSeen: new Date(firstSeenMs).toISOString(), lastSeen: new Date(lastSeenMs).toISOString() };
}

/** Per (user, unit|job|container) totals over a range from the ledger's workload buckets
 *  (counted scopes merged), with the live rates of the last settle; only the users the
 *  caller sees, and of them `wanted`: a user sees the units of their own sockets only.
 *  Not yet presented (pseudonyms): the caller's scope does that. */
function unitTotals(view: AgentView, scope: Scope, wanted: (uid: number) => boolean, req: { from: number; to: number; by: WorkloadGrouping }): UnitRow[] {
  const onlyUid = scope.role === 'self' ? scope.callerUid : undefined;
  const rows = new Map<string, UnitRow>();
  const rowOf = (uid: number, w: Workload): UnitRow => {
    const unit = workloadGroup(w, req.by);
    const key = `${uid} ${unit}`;
    let r = rows.get(key);
    if (!r) {
      const kind = req.by === 'job' && w.jobId !== undefined ? 'job' : w.kind;
      r = { uid, user: '', unit, kind, jobId: w.jobId ?? null, containerId: w.containerId ?? null, cgroupPaths: [], ...zeroCounters(), rxRate: 0, txRate: 0, rxPayloadRate: 0, txPayloadRate: 0 };
      rows.set(key, r);
    }
    if (!r.cgroupPaths.includes(w.cgroupPath)) r.cgroupPaths.push(w.cgroupPath);
    return r;
  };
  const inSight = (uid: number) => scope.sees(uid) && wanted(uid);
  for (const t of view.ledger.unitTotals(req.from, req.to, onlyUid)) {
    if ((t.scope === 'loopback' && !view.countLoopback()) || !inSight(t.uid)) continue;
    addInto(rowOf(t.uid, view.accounting.nameWorkload(t.cgroupPath)), t);
  }
  for (const w of view.accounting.workloadRates()) {
    if (!inSight(w.uid)) continue;
    const r = rowOf(w.uid, w.workload);
    r.rxRate += Math.round(w.rxRate);
    r.txRate += Math.round(w.txRate);
    r.rxPayloadRate += Math.round(w.rxPayloadRate);
    r.txPayloadRate += Math.round(w.txPayloadRate);
  }
  const name = view.names.within(NAME_BUDGET_MS);
  for (const r of rows.values()) r.user = name(r.uid);
  return [...rows.values()].sort((a, b) => b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes) || a.uid - b.uid || a.unit.localeCompare(b.unit));
}

/** The `limit` flows with the most bytes (all of them, in table order, without a limit). */
function biggest(flows: FlowSnapshot[], limit: number | undefined): FlowSnapshot[] {
  if (limit === undefined || flows.length <= limit) return flows;
  return flows.sort((a, b) => b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes)).slice(0, limit);
}

/** `status` as a caller without an admin's role sees it: the agent's health, without the
 *  fields that name files, exporters without their detail, a flush error only as the fact
 *  that there is one, and host-wide traffic (per-interface totals at poll resolution, the
 *  users beyond the user table: others' traffic) only where the role allows (`hostWide`). */
function redactStatusForNonAdmin(s: StatusResult, hostWide: boolean): StatusResult {
  return {
    agent: { ...s.agent, configFile: null },
    meter: {
      ...s.meter,
      pinDir: null,
      interfaces: hostWide ? s.meter.interfaces : null,
      health: { ...s.meter.health, beyondUserTable: hostWide ? s.meter.health.beyondUserTable : null },
    },
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
    const scope = view.scopeOf(caller);
    switch (req.op) {
      case 'users': {
        const usage = visibleUsage(view, scope, req.from, req.to);
        const name = view.names.within(NAME_BUDGET_MS);
        for (const u of usage.users.values()) u.user = name(u.uid);
        const rows = scope
          .rows(usage.users.values())
          .sort((a, b) => b.rxBytes + b.txBytes - (a.rxBytes + a.txBytes) || a.uid - b.uid);
        const result: UsersResult = {
          from: new Date(req.from).toISOString(),
          to: new Date(req.to).toISOString(),
          ...countedRange(view, req.from, req.to),
          users: rows,
          unattributed: unattributedFor(scope, usage),
        };
        return result;
      }
      case 'units': {
        const result: UnitsResult = {
          from: new Date(req.from).toISOString(),
          to: new Date(req.to).toISOString(),
          ...countedRange(view, req.from, req.to),
          by: req.by,
          units: scope.rows(unitTotals(view, scope, scope.userFilter(req.user), req)),
        };
        return result;
      }
      case 'report':
        return report(
          {
            ledger: view.ledger,
            countLoopback: () => view.countLoopback(),
            history: view.history,
            namer: () => view.names.within(NAME_BUDGET_MS),
            nameWorkload: (path) => view.accounting.nameWorkload(path),
          },
          req,
          scope,
        );
      case 'procs': {
        const wanted = scope.userFilter(req.user);
        view.accounting.watchProcesses(Date.now());
        const mine = view.accounting.processList().filter((p) => wanted(p.uid));
        return { processes: scope.rows(mine.sort(byRateThenBytes).map(processRow)) };
      }
      case 'flows': {
        const wanted = scope.userFilter(req.user);
        view.accounting.refreshFlows(Date.now());
        const keep = (f: FlowSnapshot) => scope.sees(f.uid) && wanted(f.uid);
        const active = view.accounting.activeFlows().filter(keep);
        const ended = view.accounting.endedFlows().filter(keep);
        const row = (f: FlowSnapshot) => scope.present(flowRow(f));
        // 65,536 flows are ≈ 23 MB of JSON: the rows are serialized a slice per turn
        return new StreamedResult(
          { activeTotal: active.length, endedTotal: ended.length },
          { active: { items: biggest(active, req.limit), row }, ended: { items: biggest(ended, req.limit), row } },
        );
      }
      case 'flows.query':
        return queryFlows(view.history, req, scope);
      case 'quota':
      case 'quota.grant':
      case 'quota.reset':
        return quotaRequest(view.quotas, view.directory, req, scope);
      case 'top': {
        const now = Date.now();
        const dayStart = localDayStart(now);
        const { users } = visibleUsage(view, scope, dayStart, now + 1);
        const rates = view.accounting.rates();
        view.accounting.watchProcesses(now);
        const procs = view.accounting.processList();
        const units = unitTotals(view, scope, () => true, { from: dayStart, to: now + 1, by: 'unit' });
        const uids = new Set([...users.keys(), ...rates.keys()].filter((uid) => uid !== UNATTRIBUTED_UID && scope.sees(uid)));
        const name = view.names.within(NAME_BUDGET_MS);
        const rows: TopUser[] = [...uids].map((uid) => {
          const rate = rates.get(uid);
          const today = users.get(uid);
          return scope.present({
            uid,
            user: name(uid),
            rxRate: Math.round(rate?.rxRate ?? 0),
            txRate: Math.round(rate?.txRate ?? 0),
            rxPayloadRate: Math.round(rate?.rxPayloadRate ?? 0),
            txPayloadRate: Math.round(rate?.txPayloadRate ?? 0),
            rxBytesToday: today?.rxBytes ?? 0,
            txBytesToday: today?.txBytes ?? 0,
            rxPayloadBytesToday: today?.rxPayloadBytes ?? 0,
            txPayloadBytesToday: today?.txPayloadBytes ?? 0,
            processes: procs
              .filter((p) => p.uid === uid)
              .sort(byRateThenBytes)
              .slice(0, req.processes)
              .map((p) => scope.present(processRow(p))),
            units: units.filter((w) => w.uid === uid).map((w) => scope.present(w)),
          });
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
            you: { uid: caller.uid, admin: scope.role === 'admin', role: scope.role },
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
        return redactDeep(scope.role === 'admin' ? result : redactStatusForNonAdmin(result, scope.hostWide));
      }
    }
  };
}
