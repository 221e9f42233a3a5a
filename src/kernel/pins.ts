// Which processes hold a pinned meter's maps open: an agent that does not answer on its
// socket (stalled, or serving another one) still does, and detaching under it would
// leave it reading maps that no longer count anything.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addon } from './native.js';

/** pids (other than this process) with a file descriptor on one of pinDir's maps. */
export function pinHolders(pinDir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(join(pinDir, 'maps'));
  } catch {
    return []; // nothing pinned
  }
  const ids = new Set(names.map((n) => addon.pinnedMapId(join(pinDir, 'maps', n))).filter((id) => id !== undefined));
  if (ids.size === 0) return [];
  const holders: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fdinfo`);
    } catch {
      continue; // exited meanwhile
    }
    const holds = fds.some((fd) => {
      try {
        const m = /^map_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1'));
        return m !== null && ids.has(Number(m[1]));
      } catch {
        return false;
      }
    });
    if (holds) holders.push(pid);
  }
  return holders;
}
