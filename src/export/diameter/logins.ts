// When a user's last login session ends, as systemd-logind records it: one file per user
// with login state in /run/systemd/users/<uid>, whose STATE= line is what
// sd_uid_get_state(3) returns. Without logind (no such directory) logouts are not known
// and sessions end only by idle time or at shutdown.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const LOGIND_USERS_DIR = '/run/systemd/users';

/** sd_uid_get_state(3): "active" and "online" have a login session; "lingering",
 *  "closing" and "offline" (or no file) have none. */
const HAS_SESSION = new Set(['active', 'online']);

export interface LoginWatch {
  /** Of `uids`, those that had a login session at the previous call and have none now. */
  ended(uids: Iterable<number>): number[];
}

export function createLoginWatch(dir = LOGIND_USERS_DIR): LoginWatch {
  let loggedIn = new Set<number>();

  function hasSession(uid: number, present: Set<string>): boolean {
    if (!present.has(String(uid))) return false;
    try {
      const state = /^STATE=(\w+)$/m.exec(readFileSync(join(dir, String(uid)), 'utf8'))?.[1];
      return state !== undefined && HAS_SESSION.has(state);
    } catch {
      return false; // removed between the listing and the read: logged out
    }
  }

  return {
    ended(uids) {
      let present: Set<string>;
      try {
        present = new Set(readdirSync(dir));
      } catch {
        return [];
      }
      const ended: number[] = [];
      // only the uids asked about are remembered: a user seen logged in, then without an
      // accounting session, must not have a later session stopped at its first check
      const next = new Set<number>();
      for (const uid of uids) {
        if (hasSession(uid, present)) next.add(uid);
        else if (loggedIn.has(uid)) ended.push(uid);
      }
      loggedIn = next;
      return ended;
    },
  };
}
