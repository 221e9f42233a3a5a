// Who may see what, decided in this one place for every control request: the handler turns
// the caller (SO_PEERCRED and SO_PEERGROUPS, never what the client claims) into a Scope
// and hands only that to each op, which passes every row through it.
//   admin    root, or a member of control.admin_group: everything, host-wide figures too
//   manager  a member of a [[control.roles]] manager's `group`: themselves and every member
//            of its `sees_group`, by name; no host-wide figures
//   auditor  a member of an auditor's `group`: everyone, uids/names/pids as keyed
//            pseudonyms and remote addresses Crypto-PAn-anonymised; host-wide figures too
//   self     anyone else: their own usage only
// A caller matched by several roles gets the first of these that applies; several manager
// roles add up.
import type { RoleConfig } from '../config/schema.js';
import type { Pseudonyms } from '../privacy/pseudonyms.js';
import { PSEUDONYM_BASE } from '../privacy/pseudonyms.js';
import { ControlError, type Caller } from './server.js';

export type Role = 'admin' | 'manager' | 'auditor' | 'self';

/** NSS look-ups (the agent's cached names, getpwnam/getpwuid/getgrnam). */
export interface Directory {
  name(uid: number): string;
  userByName(name: string): { uid: number; gid: number } | undefined;
  primaryGroup(uid: number): number | undefined;
  group(name: string): { gid: number; members: string[] } | undefined;
}

export interface AccessPolicy {
  adminGroup: string;
  roles: readonly RoleConfig[];
  /** the auditor's pseudonyms; reads (or creates) their secret on first use */
  pseudonyms(): Pseudonyms;
}

/** What a row shown to a caller may carry that says who or where. */
export interface Owned {
  uid: number;
  user: string;
  pid?: number;
  remoteAddress?: string;
  family?: number;
  /** a workload's name and cgroup paths: systemd's per-user units carry the uid */
  unit?: string;
  cgroupPaths?: string[];
}

/** user-1000.slice, user@1000.service, user-1000 in a unit's name: the uid, hidden */
const hideUids = (text: string) => text.replace(/\buser([-@])\d+/g, 'user$1*');

export interface Scope {
  role: Role;
  /** the caller's own uid */
  callerUid: number;
  /** host-wide figures: unattributed traffic and interface counters */
  hostWide: boolean;
  sees(uid: number): boolean;
  /** a visible row as this caller may see it (pseudonymised for an auditor) */
  present<T extends Owned>(row: T): T;
  /** the visible rows, presented */
  rows<T extends Owned>(rows: Iterable<T>): T[];
  /** `-u QUERY` as a test on real uids; throws when the user does not exist or is out of sight */
  userFilter(query: string | undefined): (uid: number) => boolean;
}

export const OUT_OF_SIGHT = "you can see only your own usage (or your role's)";

function scope(role: Role, caller: Caller, sees: (uid: number) => boolean, present: <T extends Owned>(row: T) => T, dir: Directory): Scope {
  return {
    role,
    callerUid: caller.uid,
    hostWide: role === 'admin' || role === 'auditor',
    sees,
    present,
    rows: (rows) => [...rows].filter((r) => sees(r.uid)).map(present),
    userFilter(query) {
      if (query === undefined) return () => true;
      const uid = /^\d+$/.test(query) ? Number(query) : dir.userByName(query)?.uid;
      if (uid === undefined) throw new ControlError('no_such_user', `no such user: ${query}`);
      if (!sees(uid)) throw new ControlError('forbidden', OUT_OF_SIGHT);
      return (u) => u === uid;
    },
  };
}

const asIs = <T extends Owned>(row: T): T => row;

function auditorScope(caller: Caller, p: Pseudonyms, dir: Directory): Scope {
  const present = <T extends Owned>(row: T): T => ({
    ...row,
    uid: p.uid(row.uid),
    user: p.user(row.uid),
    ...(row.pid !== undefined ? { pid: p.pid(row.pid) } : {}),
    ...(row.remoteAddress !== undefined ? { remoteAddress: p.address(row.remoteAddress, row.family ?? 6) } : {}),
    ...(row.unit !== undefined ? { unit: hideUids(row.unit) } : {}),
    ...(row.cgroupPaths !== undefined ? { cgroupPaths: row.cgroupPaths.map(hideUids) } : {}),
  });
  const base = scope('auditor', caller, () => true, present, dir);
  return {
    ...base,
    // an auditor names users only by pseudonym: a real name would tell whose rows they are
    userFilter(query) {
      if (query === undefined) return () => true;
      if (!/^anon-[0-9a-f]{10}$/.test(query) && !(/^\d+$/.test(query) && Number(query) >= PSEUDONYM_BASE)) {
        throw new ControlError('forbidden', `as an auditor you name users by pseudonym (anon-…, or its uid ≥ ${PSEUDONYM_BASE}), not by name or uid`);
      }
      return (uid) => p.user(uid) === query || String(p.uid(uid)) === query;
    },
  };
}

export function scopeOf(caller: Caller, policy: AccessPolicy, dir: Directory): Scope {
  // membership as the kernel saw the caller's process, or as the group database lists it
  const callerIn = (name: string) => {
    const g = dir.group(name);
    return g !== undefined && (caller.gid === g.gid || caller.groups.includes(g.gid) || g.members.includes(dir.name(caller.uid)));
  };
  if (caller.uid === 0 || (policy.adminGroup !== '' && callerIn(policy.adminGroup))) return scope('admin', caller, () => true, asIs, dir);

  const managed = policy.roles.flatMap((r) => (r.role === 'manager' && callerIn(r.group) ? [dir.group(r.sees_group)] : []));
  if (managed.length > 0) {
    const groups = managed.filter((g) => g !== undefined);
    const known = new Map<number, boolean>(); // NSS once per uid per request
    const sees = (uid: number) => {
      let v = known.get(uid);
      if (v === undefined) {
        v = uid === caller.uid || groups.some((g) => dir.primaryGroup(uid) === g.gid || g.members.includes(dir.name(uid)));
        known.set(uid, v);
      }
      return v;
    };
    return scope('manager', caller, sees, asIs, dir);
  }
  if (policy.roles.some((r) => r.role === 'auditor' && callerIn(r.group))) return auditorScope(caller, policy.pseudonyms(), dir);
  return scope('self', caller, (uid) => uid === caller.uid, asIs, dir);
}
