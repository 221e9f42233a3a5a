// dpkg as the package tests run it: a machine may be running apt, unattended-upgrades or
// another test's dpkg at the same moment; dpkg itself then fails at once (exit 2, "…lock
// was locked by another process"). Waiting for the lock, as apt's DPkg::Lock::Timeout
// does, is what an admin would do.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, renameSync, rmSync } from 'node:fs';

const LOCK_WAIT_MS = 10 * 60_000;
const LOCKED = /lock.* (was )?locked by another process|database is locked by another process/i;
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Runs dpkg with `args`; while another process holds the dpkg lock, retries every 0.5 s (up to 10 min). */
export function dpkg(args: string[], env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const r = spawnSync('dpkg', args, { encoding: 'utf8', env, timeout: 120_000 });
    if (r.status !== 2 || !LOCKED.test(r.stderr) || Date.now() > deadline) return r;
    pause(500);
  }
}

/** Holds the dpkg frontend lock as apt does (an fcntl lock on lock-frontend) for `ms`;
 *  resolves once it is held. */
export async function holdDpkgLock(ms: number): Promise<ChildProcess> {
  const holder = spawn('python3', ['-c', `
import fcntl, sys, time
f = open('/var/lib/dpkg/lock-frontend', 'w')
fcntl.lockf(f, fcntl.LOCK_EX)
print('held', flush=True)
time.sleep(${ms / 1000})
`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`could not take the dpkg lock (exit ${code})`)));
  });
  return holder;
}

/** What the package owns and `dpkg --purge` removes (packaging/debian/postrm). */
const PACKAGE_STATE = ['/etc/ubia', '/var/lib/ubia', '/var/log/ubia', '/run/ubia'];

/**
 * An agent may already run on this machine with these paths (`scripts/setup start` uses
 * the defaults): the package test installs and purges, and purge removes them. They are
 * renamed aside for the test and put back after (a running agent keeps its open ledger
 * and listening socket across the renames; its socket path answers again once restored).
 * Returns the function that puts them back.
 */
export function setAsideAgentState(tag: string): () => void {
  const moved = PACKAGE_STATE.filter((p) => existsSync(p)).map((p) => {
    const aside = `${p}.set-aside-${tag}`;
    renameSync(p, aside);
    return { p, aside };
  });
  return () => {
    for (const { p, aside } of moved) {
      rmSync(p, { recursive: true, force: true });
      renameSync(aside, p);
    }
  };
}
