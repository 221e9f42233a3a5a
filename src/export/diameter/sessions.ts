// Accounting sessions, one per user, or with `session_per = "job"` one per (user, batch
// job) plus one per user for the traffic outside jobs: when a session's START, INTERIMs
// and STOP are due, and the cumulative counters each record carries. Every record and
// the session state that goes with it are written to the ledger in one transaction.
// Between records a session's counters are saved only when the agent saves its
// checkpoint: a crash in between is made good by the agent handing those deltas over
// again (see `unconfirmed*`).
import type { TrafficCounters } from '../../kernel/types.js';
import type { UsageInterval } from '../types.js';
import { buildAcr } from './acr.js';
import { RecordType, TerminationCause, type RecordTypeValue } from './dictionary.js';
import type { DiameterOutbox, SessionRow } from './outbox.js';

export interface SessionSettings {
  originHost: string;
  originRealm: string;
  destinationRealm: string;
  destinationHost?: string;
  nasIdentifier: string;
  interimIntervalS: number;
  idleStopS: number;
  sessionPer: 'user' | 'job';
  /** Vendor-Id of the Ubia-Job-Id AVP */
  vendorId: number;
  /** whether a job's cgroup (path below the cgroup2 mount) is gone: its session STOPs */
  jobGone(cgroup: string): boolean;
}

export interface Sessions {
  /** adds one poll's deltas: STARTs sessions for new users, INTERIMs those that are due */
  addUsage(interval: UsageInterval): void;
  /** the agent saved its checkpoint (or goes on without a restart): the deltas added so
   *  far will not be handed over again */
  confirmed(): void;
  /** confirmed() in two steps, for a checkpoint saved in a transaction of the caller's:
   *  writes the sessions as confirmed (inside it), and returns the step for memory, to
   *  run once it committed (a rolled-back checkpoint leaves memory as it was) */
  saveConfirmed(): () => void;
  /** INTERIMs that are due, STOPs for users' sessions idle longer than idleStopS and for
   *  jobs' sessions whose cgroup has been gone for JOB_GONE_GRACE_MS (addUsage STOPs them
   *  at once when the agent reports the job's workloads ended) */
  tick(nowMs: number): void;
  /** the user's last login session ended: their user session STOPs (their jobs' go on) */
  stopUser(uid: number, nowMs: number): void;
  /** agent shutdown: users' sessions STOP; jobs' sessions carry on with the next agent (a
   *  job outlives an agent restart, and its session must not split in two) */
  stopAll(nowMs: number): void;
  /** RFC 6733 §9.8.2: the interval in an ACA overrides ours for that session */
  setServerInterim(sessionId: string, seconds: number): void;
  /** users with an open user session */
  uids(): Iterable<number>;
  readonly count: number;
}

/** Each session counter, its unconfirmed part, and the delta it adds up. Input is what
 *  the user sent, as NAS accounting counts it (RFC 7155 §4.4.1). */
const COUNTERS = [
  ['inputOctets', 'unconfirmedInputOctets', 'txBytes'],
  ['outputOctets', 'unconfirmedOutputOctets', 'rxBytes'],
  ['inputPackets', 'unconfirmedInputPackets', 'txPackets'],
  ['outputPackets', 'unconfirmedOutputPackets', 'rxPackets'],
] as const;

/** One session's share of a poll: a user's traffic, or a user's traffic in one job. */
interface SessionDelta {
  sessionKey: string;
  uid: number;
  user: string;
  job: { id: string; cgroup: string } | null;
  counts: Pick<TrafficCounters, (typeof COUNTERS)[number][2]>;
}

const userSessionKey = (uid: number): string => String(uid);

/** A job session whose cgroup is gone but whose end the agent has not reported STOPs after
 *  this long: the agent reports an ended workload once its last traffic is handed over
 *  (a poll or two), so a STOP before that could leave the job's last bytes to a new session. */
const JOB_GONE_GRACE_MS = 5000;

/** The job's own cgroup: of the unit's path (a step, or a task below it, e.g.
 *  /system.slice/slurmstepd.scope/job_1234/step_0), the part up to the component named
 *  after the job (job_1234); Slurm removes that directory when the job ends. A path with
 *  no such component is the job's cgroup itself. */
export function jobCgroupOf(cgroupPath: string, jobId: string): string {
  const parts = cgroupPath.split('/');
  const i = parts.findIndex((p, k) => k > 0 && p.endsWith(jobId) && !/[0-9A-Za-z]/.test(p.charAt(p.length - jobId.length - 1)));
  return i < 0 ? cgroupPath : parts.slice(0, i + 1).join('/');
}

/** A poll's deltas by session: per user, or per (user, job) and per user for the rest.
 *  Per job, the user's session takes the user's workloads outside jobs, not the user's
 *  delta less their jobs': the agent books a user's delta over workloads up to a settle
 *  later (src/agent/workloads.ts), so in one poll a job's share can exceed what the user
 *  moved, while the workloads alone add up to the user's total over time. An interval
 *  without workloads (exporters' tests) goes to the users' sessions. */
function sessionDeltas(interval: UsageInterval, per: 'user' | 'job'): SessionDelta[] {
  const deltas = new Map<string, SessionDelta>();
  const add = (key: string, d: Omit<SessionDelta, 'sessionKey' | 'counts'>, counts: SessionDelta['counts']): void => {
    let s = deltas.get(key);
    if (!s) {
      s = { sessionKey: key, ...d, counts: { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 } };
      deltas.set(key, s);
    }
    for (const [, , c] of COUNTERS) s.counts[c] += counts[c];
  };
  if (per === 'user' || interval.workloads === undefined) {
    for (const u of interval.users) add(userSessionKey(u.uid), { uid: u.uid, user: u.user, job: null }, u);
    return [...deltas.values()];
  }
  for (const u of interval.workloads) {
    const id = u.workload.jobId;
    if (id === undefined) add(userSessionKey(u.uid), { uid: u.uid, user: u.user, job: null }, u);
    else add(`${u.uid}:${id}`, { uid: u.uid, user: u.user, job: { id, cgroup: jobCgroupOf(u.workload.cgroupPath, id) } }, u);
  }
  return [...deltas.values()];
}

export function createSessions(
  ledger: DiameterOutbox,
  settings: SessionSettings,
  nextEndToEnd: () => number,
  onEnqueued: () => void,
): Sessions {
  // sessions survive a crash (and jobs' sessions a restart): same Session-Id, record
  // numbers continue
  const byKey = new Map<string, SessionRow>(ledger.loadSessions().map((s) => [s.sessionKey, s]));
  const bySessionId = new Map<string, SessionRow>([...byKey.values()].map((s) => [s.sessionId, s]));
  // After a crash the agent resumes from its last checkpoint and hands the deltas since
  // then over again: per session, that much of the next deltas was counted already.
  // Keyed by session key: a session STOPped since the checkpoint (logout) leaves its part
  // to the next session of its user (or job).
  const replay = new Map<string, number[]>();
  const replayAlso = (key: string, counts: number[]): void => {
    if (counts.every((v) => v === 0)) return;
    const sum = replay.get(key);
    replay.set(key, sum ? sum.map((v, k) => v + counts[k]!) : counts);
  };
  for (const s of byKey.values()) replayAlso(s.sessionKey, COUNTERS.map(([, unconfirmed]) => s[unconfirmed]));
  for (const { sessionKey, counts } of ledger.loadUnconfirmed()) replayAlso(sessionKey, counts);

  // the low 32 bits of new Session-Ids; persisted once per transaction
  let sequence = ledger.loadSessionSequence();
  let savedSequence = sequence;
  const fresh = new Set<SessionRow>(); // created in this transaction, not yet inserted
  const dirty = new Set<SessionRow>(); // counted since the last save, saved at the next checkpoint

  const interimMs = (s: SessionRow): number => (s.serverInterimS ?? settings.interimIntervalS) * 1000;

  function newSession(d: SessionDelta, nowMs: number): SessionRow {
    // RFC 6733 §8.8: <DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional value>]
    const high = Math.floor(nowMs / 1000) >>> 0;
    sequence = (sequence + 1) % 2 ** 32;
    const low = sequence;
    const s: SessionRow = {
      sessionKey: d.sessionKey,
      uid: d.uid,
      user: d.user,
      jobId: d.job?.id ?? null,
      jobCgroup: d.job?.cgroup ?? null,
      sessionId: `${settings.originHost};${high};${low};ubia-${d.uid}${d.job ? `-job-${d.job.id}` : ''}`,
      startedMs: nowMs,
      lastTrafficMs: nowMs,
      lastRecordMs: nowMs,
      nextRecordNumber: 0,
      serverInterimS: null,
      inputOctets: 0,
      outputOctets: 0,
      inputPackets: 0,
      outputPackets: 0,
      unconfirmedInputOctets: 0,
      unconfirmedOutputOctets: 0,
      unconfirmedInputPackets: 0,
      unconfirmedOutputPackets: 0,
    };
    byKey.set(s.sessionKey, s);
    bySessionId.set(s.sessionId, s);
    fresh.add(s);
    return s;
  }

  function record(s: SessionRow, type: RecordTypeValue, nowMs: number, terminationCause?: number): void {
    const message = buildAcr({
      ...settings,
      sessionId: s.sessionId,
      recordType: type,
      recordNumber: s.nextRecordNumber,
      userName: s.user,
      eventMs: nowMs,
      inputOctets: s.inputOctets,
      outputOctets: s.outputOctets,
      inputPackets: s.inputPackets,
      outputPackets: s.outputPackets,
      sessionTimeS: Math.max(0, Math.floor((nowMs - s.startedMs) / 1000)),
      interimIntervalS: interimMs(s) / 1000,
      terminationCause,
      endToEnd: nextEndToEnd(),
      job: s.jobId === null ? undefined : { id: s.jobId, vendorId: settings.vendorId },
    });
    ledger.enqueue({ sessionId: s.sessionId, recordNumber: s.nextRecordNumber, recordType: type, message });
    s.nextRecordNumber += 1;
    s.lastRecordMs = nowMs;
    if (type === RecordType.Stop) {
      if (!fresh.delete(s)) ledger.deleteSession(s.sessionKey);
      dirty.delete(s);
      byKey.delete(s.sessionKey);
      bySessionId.delete(s.sessionId);
      const unconfirmed = COUNTERS.map(([, u]) => s[u]);
      if (unconfirmed.some((v) => v > 0)) ledger.keepUnconfirmed(s.sessionKey, unconfirmed);
    } else {
      save(s);
    }
  }

  /** The part of a delta not counted before a crash (taken off what is to replay). */
  function uncounted(d: SessionDelta): number[] {
    const again = replay.get(d.sessionKey);
    const out = COUNTERS.map(([, , source], k) => {
      const counted = again ? Math.min(d.counts[source], again[k]!) : 0;
      if (again) again[k]! -= counted;
      return d.counts[source] - counted;
    });
    if (again?.every((v) => v === 0)) replay.delete(d.sessionKey);
    return out;
  }

  function count(s: SessionRow, counts: number[]): void {
    COUNTERS.forEach(([total, unconfirmed], k) => {
      s[total] += counts[k]!;
      s[unconfirmed] += counts[k]!;
    });
  }

  /** job sessions whose cgroup was first found gone, and when */
  const goneSince = new Map<string, number>();
  function stopJob(s: SessionRow, nowMs: number): void {
    goneSince.delete(s.sessionKey);
    // RFC 6733 §8.15: the job ended as its user meant it to, as a user's logout does
    record(s, RecordType.Stop, nowMs, TerminationCause.Logout);
  }

  function goneLongEnough(s: SessionRow, cgroup: string, nowMs: number): boolean {
    if (!settings.jobGone(cgroup)) {
      goneSince.delete(s.sessionKey);
      return false;
    }
    const since = goneSince.get(s.sessionKey) ?? nowMs;
    goneSince.set(s.sessionKey, since);
    return nowMs - since >= JOB_GONE_GRACE_MS;
  }

  function interimsDue(nowMs: number): void {
    for (const s of byKey.values()) {
      if (nowMs - s.lastRecordMs >= interimMs(s)) record(s, RecordType.Interim, nowMs);
    }
  }

  function save(s: SessionRow): void {
    dirty.delete(s);
    if (fresh.delete(s)) ledger.insertSession(s);
    else ledger.updateSession(s);
  }

  function saveConfirmed(): () => void {
    const settled = (s: SessionRow): SessionRow => ({ ...s, ...Object.fromEntries(COUNTERS.map(([, unconfirmed]) => [unconfirmed, 0])) });
    ledger.transaction(() => {
      ledger.clearUnconfirmed();
      for (const s of dirty) ledger.updateSession(settled(s));
    });
    return () => {
      replay.clear();
      for (const s of byKey.values()) for (const [, unconfirmed] of COUNTERS) s[unconfirmed] = 0;
      dirty.clear();
    };
  }

  /** one transaction per change, then wake the sender */
  function changed(fn: () => void): void {
    ledger.transaction(() => {
      fn();
      if (sequence !== savedSequence) ledger.saveSessionSequence(sequence);
    });
    savedSequence = sequence;
    onEnqueued();
  }

  return {
    addUsage(interval) {
      changed(() => {
        for (const d of sessionDeltas(interval, settings.sessionPer)) {
          const counts = uncounted(d);
          // nothing new (or all of it counted before a crash): no session starts for it
          if (counts.every((v) => v === 0)) continue;
          const existing = byKey.get(d.sessionKey);
          const s = existing ?? newSession(d, interval.startMs);
          count(s, counts);
          s.lastTrafficMs = interval.endMs;
          if (!existing) record(s, RecordType.Start, interval.endMs);
          else dirty.add(s);
        }
        // the agent names the workloads whose cgroup went away once their last traffic is
        // in this interval or an earlier one: their jobs' sessions can STOP now
        const endedJobs = new Set((interval.endedWorkloads ?? []).map((w) => w.jobId).filter((id) => id !== undefined));
        for (const s of [...byKey.values()]) {
          if (s.jobId !== null && endedJobs.has(s.jobId) && settings.jobGone(s.jobCgroup!)) stopJob(s, interval.endMs);
        }
        interimsDue(interval.endMs);
      });
    },
    confirmed() {
      saveConfirmed()();
    },
    saveConfirmed,
    tick(nowMs) {
      const all = [...byKey.values()];
      const idle = all.filter((s) => s.jobCgroup === null && nowMs - s.lastTrafficMs >= settings.idleStopS * 1000);
      // a job the agent never said ended (it ended while no agent ran, or the agent saw
      // none of its workloads go): its cgroup gone for JOB_GONE_GRACE_MS is enough
      const ended = all.filter((s) => s.jobCgroup !== null && goneLongEnough(s, s.jobCgroup, nowMs));
      const due = all.some((s) => nowMs - s.lastRecordMs >= interimMs(s));
      if (idle.length === 0 && ended.length === 0 && !due) return;
      changed(() => {
        for (const s of idle) record(s, RecordType.Stop, nowMs, TerminationCause.SessionTimeout);
        for (const s of ended) stopJob(s, nowMs);
        interimsDue(nowMs);
      });
    },
    stopUser(uid, nowMs) {
      const s = byKey.get(userSessionKey(uid));
      if (s) changed(() => record(s, RecordType.Stop, nowMs, TerminationCause.Logout));
    },
    stopAll(nowMs) {
      const users = [...byKey.values()].filter((s) => s.jobId === null);
      if (users.length === 0) return;
      changed(() => {
        for (const s of users) record(s, RecordType.Stop, nowMs, TerminationCause.Administrative);
      });
    },
    setServerInterim(sessionId, seconds) {
      const s = bySessionId.get(sessionId);
      if (!s || seconds === 0 || s.serverInterimS === seconds) return;
      s.serverInterimS = seconds;
      save(s);
    },
    uids() {
      return [...byKey.values()].filter((s) => s.jobId === null).map((s) => s.uid);
    },
    get count() {
      return byKey.size;
    },
  };
}
