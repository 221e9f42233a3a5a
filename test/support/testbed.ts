// Test users and a network namespace behind a veth pair that stands in for "the
// outside" (198.18.0.0/15 and 2001:db8::/32, never routed). Shared by the tests and the
// benchmarks; everything created here has a matching remove.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export interface Netns {
  name: string;
  /** host side of the veth pair */
  hostIf: string;
  hostV4: string;
  nsV4: string;
  hostV6: string;
  nsV6: string;
}

export const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export function createUser(prefix = 'ubia-t'): TestUser {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  sh('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
  const uid = Number(sh('id', ['-u', name]).trim());
  const gid = Number(sh('id', ['-g', name]).trim());
  return { name, uid, gid };
}

export function removeUser(u: TestUser): void {
  try {
    sh('userdel', [u.name]);
  } catch {
    /* already gone */
  }
}

/** A namespace with one veth pair; subnet picks 198.18.<subnet>.0/24 and 2001:db8:<subnet>::/64. */
export function createNetns(subnet: number): Netns {
  const tag = randomBytes(2).toString('hex');
  const ns: Netns = {
    name: `ubia-t-${tag}`,
    hostIf: `ubth${tag}`,
    hostV4: `198.18.${subnet}.1`,
    nsV4: `198.18.${subnet}.2`,
    hostV6: `2001:db8:${subnet}::1`,
    nsV6: `2001:db8:${subnet}::2`,
  };
  const nsIf = `ubtn${tag}`;
  sh('ip', ['netns', 'add', ns.name]);
  sh('ip', ['link', 'add', ns.hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
  sh('ip', ['link', 'set', nsIf, 'netns', ns.name]);
  sh('ip', ['addr', 'add', `${ns.hostV4}/24`, 'dev', ns.hostIf]);
  sh('ip', ['-6', 'addr', 'add', `${ns.hostV6}/64`, 'dev', ns.hostIf, 'nodad']);
  sh('ip', ['link', 'set', ns.hostIf, 'up']);
  const inNs = (...a: string[]) => sh('ip', ['netns', 'exec', ns.name, ...a]);
  inNs('ip', 'addr', 'add', `${ns.nsV4}/24`, 'dev', nsIf);
  inNs('ip', '-6', 'addr', 'add', `${ns.nsV6}/64`, 'dev', nsIf, 'nodad');
  inNs('ip', 'link', 'set', nsIf, 'up');
  inNs('ip', 'link', 'set', 'lo', 'up');
  return ns;
}

export function removeNetns(ns: Netns): void {
  try {
    sh('ip', ['link', 'del', ns.hostIf]);
  } catch {
    /* went with the namespace */
  }
  try {
    sh('ip', ['netns', 'del', ns.name]);
  } catch {
    /* already gone */
  }
}

