// uid → user name through NSS (LDAP/SSSD aware), cached for `ttlMs` so a poll over
// thousands of users costs no look-ups. A uid without a name is shown as its number.
export type UserNameLookup = (uid: number) => string | undefined;

export interface NameCache {
  /** `atMs`: the caller's clock reading when it has one (a poll names 1,000s of users) */
  name(uid: number, atMs?: number): string;
  setTtl(ttlMs: number): void;
}

export function createNameCache(lookup: UserNameLookup, ttlMs: number, now: () => number = Date.now): NameCache {
  const cache = new Map<number, { name: string; until: number }>();
  let ttl = ttlMs;
  return {
    name(uid, atMs) {
      const t = atMs ?? now();
      const hit = cache.get(uid);
      if (hit && hit.until > t) return hit.name;
      let name: string | undefined;
      try {
        name = lookup(uid);
      } catch {
        name = undefined; // NSS back-end down: show the number, try again after the ttl
      }
      const entry = { name: name ?? String(uid), until: t + ttl };
      cache.set(uid, entry);
      return entry.name;
    },
    setTtl(ms) {
      ttl = ms;
      cache.clear();
    },
  };
}
