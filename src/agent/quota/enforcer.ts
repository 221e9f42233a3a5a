// What the quota engine asks of the kernel's enforcement (src/kernel/quota.ts provides
// it; the agent gets it through its deps, as it gets the meter): declared here in the
// agent's words so the engine and its tests depend on no addon.
export type QuotaAction = { kind: 'block' } | { kind: 'throttle'; bytesPerSecond: number };

export interface QuotaVerdict {
  uid: number;
  action: QuotaAction;
  /** wall-clock ms since the epoch: the period's end, when the kernel lifts it by itself */
  untilMs: number;
}

export interface QuotaExemptions {
  cidrs: string[];
  localServices: boolean;
}

export interface QuotaEnforcer {
  set(v: QuotaVerdict): void;
  clear(uid: number): void;
  list(): QuotaVerdict[];
  setExemptions(e: QuotaExemptions): void;
  close(opts?: { detach?: boolean }): void;
}

export const sameAction = (a: QuotaAction, b: QuotaAction) => a.kind === b.kind && (a.kind === 'block' || a.bytesPerSecond === (b as typeof a).bytesPerSecond);
