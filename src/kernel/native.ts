// Loads the native addon (native/, built by cmake-js) and types what it exports.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FlowRecord, HookStatus, InterfaceCounters, MeterEvent, ProcessCounters, UnattributedCounters, UserCounters } from './types.js';

export interface NativeStats {
  userOverflows: number;
  processOverflows: number;
  flowOverflows: number;
  interfaceOverflows: number;
  eventsDropped: number;
  unattributed: UnattributedCounters;
}

export interface NativeMeter {
  readUsers(): UserCounters[];
  readProcesses(): ProcessCounters[];
  /** active flows, and flows that ended while the ring buffer was full (ended: true) */
  readFlows(): Array<FlowRecord & { ended: boolean }>;
  readInterfaces(): InterfaceCounters[];
  readStats(): NativeStats;
  forgetProcesses(pids: number[]): number;
  forgetFlow(cookie: bigint): void;
  status(): { mode: string; pinDir: string; resumed: boolean; hooks: HookStatus[] };
  onEvents(cb: (events: MeterEvent[]) => void): void;
  pollEvents(): MeterEvent[];
  close(detach?: boolean): void;
}

interface NativeAddon {
  Meter: new (opts: { pinDir?: string; flowCapacity?: number }) => NativeMeter;
  detachPinned(pinDir: string): void;
  abiVersion: number;
  userName(uid: number): string | undefined;
  groupMembers(name: string): { gid: number; members: string[] } | undefined;
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
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
/** SO_PEERCRED of a connected unix socket fd. */
export const peerCredentials = (fd: number) => addon.peerCredentials(fd);
/** One datagram to $NOTIFY_SOCKET (abstract addresses included); false when unset. */
export const sdNotify = (state: string): boolean => addon.sdNotify(state);
