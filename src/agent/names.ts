// uid → user name through NSS (LDAP/SSSD aware), cached for `ttlMs` so a poll over
// thousands of users costs no look-ups. A uid without a name is shown as its number.
// NSS look-ups are synchronous (getpwuid_r) and may take milliseconds each against LDAP,
// so a control reply names its rows through `within`: look-ups stop after a time budget,
// and the rest are shown as numbers for now and looked up a few at a time in later
// event-loop turns, so the next reply has them.
export type UserNameLookup = (uid: number) => string | undefined;

export interface NameCache {
  /** `atMs`: the caller's clock reading when it has one (a poll names 1,000s of users) */
  name(uid: number, atMs?: number): string;
  /** A namer for one reply: cached names, NSS look-ups for at most `budgetMs` in all. */
  within(budgetMs: number): (uid: number) => string;
  setTtl(ttlMs: number): void;
}

/** NSS time spent per event-loop turn on names that a reply went without */
const BACKGROUND_SLICE_MS = 5;

export function createNameCache(lookup: UserNameLookup, ttlMs: number, now: () => number = Date.now): NameCache {
  const cache = new Map<number, { name: string; until: number }>();
  let ttl = ttlMs;
  const cached = (uid: number, t: number) => {
    const hit = cache.get(uid);
    return hit && hit.until > t ? hit.name : undefined;
  };
  const resolve = (uid: number, t: number) => {
    let name: string | undefined;
    try {
      name = lookup(uid);
    } catch {
      name = undefined; // NSS back-end down: show the number, try again after the ttl
    }
    const entry = { name: name ?? String(uid), until: t + ttl };
    cache.set(uid, entry);
    return entry.name;
  };

  const later = new Set<number>();
  let scheduled = false;
  const resolveLater = () => {
    const stop = now() + BACKGROUND_SLICE_MS;
    for (const uid of later) {
      later.delete(uid);
      const t = now();
      if (cached(uid, t) === undefined) resolve(uid, t);
      if (now() >= stop) break;
    }
    scheduled = later.size > 0;
    if (scheduled) setImmediate(resolveLater).unref();
  };

  return {
    name(uid, atMs) {
      const t = atMs ?? now();
      return cached(uid, t) ?? resolve(uid, t);
    },
    within(budgetMs) {
      const deadline = now() + budgetMs;
      return (uid) => {
        const t = now();
        const hit = cached(uid, t);
        if (hit !== undefined) return hit;
        if (t < deadline) return resolve(uid, t);
        later.add(uid);
        if (!scheduled) {
          scheduled = true;
          setImmediate(resolveLater).unref();
        }
        return String(uid);
      };
    },
    setTtl(ms) {
      ttl = ms;
      cache.clear();
    },
  };
}
