// Loads the native addon (native/, built by cmake-js) and types what it exports.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FlowRecord, HookStatus, InterfaceCounters, MeterMode, ProcessCounters, TrafficCounters, UserCounters, WireCounters } from './types.js';

export interface NativeStats {
  userOverflows: number;
  processOverflows: number;
  flowOverflows: number;
  interfaceOverflows: number;
  eventsDropped: number;
  unattributed: WireCounters;
  beyondUserTable: TrafficCounters;
}

/** A string column: one code per row into a few distinct values. */
export interface DictColumn {
  codes: Uint32Array;
  values: string[];
}

/** A table as the addon hands it over: one array per field, all of `length`. */
export type Columns<T> = { length: number } & { [K in keyof T]: T[K] extends string ? DictColumn : ArrayLike<T[K]> };

export interface NativeEvents {
  flowsEnded: Columns<FlowRecord>;
  processesExited: Columns<{ pid: number; exitedMs: number }>;
}

export interface NativeMeter {
  fold(): void;
  readUsers(): Columns<UserCounters>;
  readProcesses(): Columns<ProcessCounters>;
  /** active flows, and flows that ended while the ring buffer was full (ended: 1) */
  readFlows(): Columns<FlowRecord & { ended: number }>;
  readInterfaces(): InterfaceCounters[];
  readStats(): NativeStats;
  forgetProcesses(pids: number[]): number;
  forgetFlow(cookie: bigint): void;
  status(): { mode: MeterMode; pinDir: string; resumed: boolean; flowCapacity: number; hooks: HookStatus[] };
  /** pin paths of this meter's maps, links and programs that are gone */
  missingPins(): string[];
  /** pins what is missing again from the fds the meter holds; how many it pinned */
  repin(): number;
  onEvents(cb: (events: NativeEvents) => void): void;
  pollEvents(): NativeEvents;
  close(detach?: boolean): void;
}

const rowBuilders = new Map<string, (cols: unknown, i: number) => unknown>();

/** Rows from columns. A builder made for the set of fields creates every row as one
 *  object literal: a single shape, and ~30x faster than assigning field by field. */
export function rows<T>(cols: Columns<T>): T[] {
  const record = cols as unknown as Record<string, unknown>;
  const keys = Object.keys(record).filter((k) => k !== 'length');
  const signature = keys.map((k) => (isDict(record[k]) ? `${k}:s` : k)).join(',');
  let build = rowBuilders.get(signature);
  if (!build) {
    const fields = keys.map((k) => {
      const ref = `c[${JSON.stringify(k)}]`;
      return `${JSON.stringify(k)}: ${isDict(record[k]) ? `${ref}.values[${ref}.codes[i]]` : `${ref}[i]`}`;
    });
    build = new Function('c', 'i', `return { ${fields.join(', ')} };`) as (cols: unknown, i: number) => unknown;
    rowBuilders.set(signature, build);
  }
  const out = new Array<T>(cols.length);
  for (let i = 0; i < cols.length; i++) out[i] = build(cols, i) as T;
  return out;
}

/** The rows at `indexes` of a table, still as columns. */
export function selectRows<T>(cols: Columns<T>, indexes: number[]): Columns<T> {
  const out: Record<string, unknown> = { length: indexes.length };
  for (const [key, col] of Object.entries(cols as unknown as Record<string, unknown>)) {
    if (key === 'length') continue;
    const pick = (a: ArrayLike<unknown>) => indexes.map((i) => a[i]);
    out[key] = isDict(col) ? { codes: Uint32Array.from(pick(col.codes) as number[]), values: col.values } : pick(col as ArrayLike<unknown>);
  }
  return out as Columns<T>;
}

function isDict(v: unknown): v is DictColumn {
  return typeof v === 'object' && v !== null && 'codes' in v;
}

export interface NativeQuotaVerdict {
  uid: number;
  action: 'block' | 'throttle';
  /** throttle: wire bytes per second per direction, and the token bucket's depth */
  rateBytes: number;
  burstBytes: number;
  /** wall-clock epoch ms of the end, as given (the kernel holds it in boot time too) */
  untilMs: number;
}

/** A prefix as the exemption tries key it: network-order address bytes (4 or 16). */
export interface NativeCidr {
  prefixLength: number;
  address: Uint8Array;
}

export interface NativeQuotaEnforcer {
  set(v: NativeQuotaVerdict): void;
  clear(uid: number): void;
  list(): NativeQuotaVerdict[];
  setExemptions(v4: NativeCidr[], v6: NativeCidr[], localServices: boolean): void;
  /** whether the quota programs are attached (they are while a verdict exists) */
  attached(): boolean;
  close(detach?: boolean): void;
}

interface NativeAddon {
  QuotaEnforcer: new (opts: { pinDir: string }) => NativeQuotaEnforcer;
  Meter: new (opts: { pinDir?: string; flowCapacity?: number; userCapacity?: number; precise?: boolean; foldOnRead?: boolean }) => NativeMeter;
  detachPinned(pinDir: string): void;
  pinnedMapId(path: string): number | undefined;
  abiVersion: number;
  userName(uid: number): string | undefined;
  groupMembers(name: string): { gid: number; members: string[] } | undefined;
  userByName(name: string): { uid: number; gid: number } | undefined;
  primaryGroup(uid: number): number | undefined;
  peerCredentials(fd: number): { pid: number; uid: number; gid: number; groups: number[] };
  sdNotify(state: string): boolean;
}

const here = dirname(fileURLToPath(import.meta.url));
// src/kernel or dist/kernel → <root>/build/native/Release
const addonPath = [join(here, '../../build/native/Release/ubia_native.node'), join(here, '../../../build/native/Release/ubia_native.node')].find(existsSync);

function load(): NativeAddon {
  if (!addonPath) {
    throw new Error('the native addon is not built (build/native/Release/ubia_native.node is missing): run `npm run build` (or scripts/setup install)');
  }
  return createRequire(import.meta.url)(addonPath) as NativeAddon;
}

export const addon: NativeAddon = load();

/** NSS user name (LDAP/SSSD aware), or undefined when the uid has none. */
export const userName = (uid: number): string | undefined => addon.userName(uid);
export const groupMembers = (name: string) => addon.groupMembers(name);
/** getpwnam: uid and primary gid of a user name, or undefined when there is no such user. */
export const userByName = (name: string) => addon.userByName(name);
/** getpwuid: the primary gid of a uid, or undefined when it has no passwd entry. */
export const primaryGroup = (uid: number) => addon.primaryGroup(uid);
/** SO_PEERCRED and SO_PEERGROUPS of a connected unix socket fd. */
export const peerCredentials = (fd: number) => addon.peerCredentials(fd);
/** One datagram to $NOTIFY_SOCKET (abstract addresses included); false when unset. */
export const sdNotify = (state: string): boolean => addon.sdNotify(state);
