// The root agent trusts its config file and writes into its state, log and socket
// directories. A user who can change any of those paths (own a component, write to a
// directory on the way, plant a symbolic link) could make root read a config of their
// choosing, or create and append to files elsewhere. Every path is therefore checked
// component by component from / down, before anything is opened or created; symbolic
// links are followed only when root made them (a link someone else owns is refused).
import { chmodSync, lstatSync, mkdirSync, readlinkSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

export class UnsafePathError extends Error {
  override name = 'UnsafePathError';
}

const MAX_LINKS = 40; // as the kernel's path walk (ELOOP)
const FIX = 'make it owned by root and writable by root only (chown root:root; chmod go-w), with no symbolic link of another user on the way';

/** Why other users could change what `path` (lstat `st`) holds, or undefined when only root can. */
function othersCanChange(path: string, st: Stats, stickyAllowed: boolean): string | undefined {
  const me = process.geteuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== me) return `${path} is ${st.isSymbolicLink() ? 'a symbolic link ' : ''}owned by uid ${st.uid}`;
  if (st.isSymbolicLink()) return undefined;
  const others = (st.mode & 0o002) !== 0;
  const group = (st.mode & 0o020) !== 0 && st.gid !== 0;
  // in a sticky directory (/tmp) others may add entries but not touch root's
  if (stickyAllowed && st.isDirectory() && (st.mode & 0o1000) !== 0) return undefined;
  if (others) return `${path} is writable by every user`;
  if (group) return `${path} is writable by group ${st.gid}`;
  return undefined;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') throw new UnsafePathError(`${path}: a component on the way is not a directory`);
    throw e;
  }
}

/**
 * Walks absolute `path` from / down, checking each component; returns the path with
 * root's symbolic links resolved, and how many of its last components do not exist yet.
 * The last component must itself be safe (a sticky directory is not: others could add to it).
 */
function walk(path: string, links = 0): { real: string; missing: number } {
  const parts = resolve(path).split('/').filter(Boolean);
  let cur = '/';
  const rootWhy = othersCanChange('/', lstatSync('/'), parts.length > 0);
  if (rootWhy) throw new UnsafePathError(rootWhy);
  for (let i = 0; i < parts.length; i++) {
    const next = join(cur, parts[i]!);
    const st = lstatOrUndefined(next);
    if (!st) return { real: join(next, ...parts.slice(i + 1)), missing: parts.length - i };
    const last = i === parts.length - 1;
    const why = othersCanChange(next, st, !last);
    if (why) throw new UnsafePathError(why);
    if (st.isSymbolicLink()) {
      if (links >= MAX_LINKS) throw new UnsafePathError(`${path}: too many levels of symbolic links`);
      const target = resolve(cur, readlinkSync(next));
      return walk(join(target, ...parts.slice(i + 1)), links + 1);
    }
    cur = next;
  }
  return { real: cur, missing: 0 };
}

/** Refuses a file (the config) that a user other than root could change. */
export function checkTrustedFile(file: string, what: string): void {
  try {
    walk(file);
  } catch (e) {
    if (e instanceof UnsafePathError) throw new UnsafePathError(`refusing ${what} ${file}: ${e.message}; ${FIX}`);
    throw e;
  }
}

/**
 * The directory `dir` (for `what`, a config key), checked and created when missing with
 * `mode` (its missing parents 0755). An existing directory keeps its mode: it may be
 * shared with other software, which is why the agent's own files in it are 0600.
 * Returns the directory with root's symbolic links resolved.
 */
export function prepareDirectory(dir: string, mode: number, what: string): string {
  try {
    let { real, missing } = walk(dir);
    if (missing > 0) {
      // each parent was checked by the walk; nobody else can create entries in it meanwhile
      const parts = real.split('/').filter(Boolean);
      for (let n = parts.length - missing + 1; n <= parts.length; n++) {
        const p = `/${parts.slice(0, n).join('/')}`;
        mkdirSync(p, { mode: n === parts.length ? mode : 0o755 });
        chmodSync(p, n === parts.length ? mode : 0o755); // whatever the umask
      }
      ({ real } = walk(real));
    }
    const st = lstatSync(real);
    if (!st.isDirectory()) throw new UnsafePathError(`${real} is not a directory`);
    return real;
  } catch (e) {
    if (e instanceof UnsafePathError) throw new UnsafePathError(`refusing ${what} ${dir}: ${e.message}; ${FIX}`);
    throw e;
  }
}

/** Makes the existing files of the ledger (the database, its -wal, -shm, -journal) 0600. */
export function tightenLedgerFiles(ledgerPath: string): void {
  const dir = dirname(ledgerPath);
  const name = basename(ledgerPath);
  for (const suffix of ['', '-wal', '-shm', '-journal']) {
    const p = join(dir, name + suffix);
    const st = lstatOrUndefined(p);
    if (st?.isFile() && (st.mode & 0o077) !== 0) chmodSync(p, st.mode & 0o600);
  }
}
