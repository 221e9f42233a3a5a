// The one sleep and the one waitFor of the tests and benchmarks.

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Inside the kernel matrix's VMs (test/kernel-vm: qemu without KVM) code runs 12–17×
 *  slower, and bounds on waiting for something stretch by this much. */
export const VM_SLOWDOWN = process.env.UBIA_KERNEL_VM ? 20 : 1;

/** Polls `check` every `everyMs` until it returns a value other than undefined or false,
 *  and returns that value; fails after `timeoutMs` (times VM_SLOWDOWN) with `what` and the
 *  last error `check` threw (a throw counts as "not yet"). */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
  everyMs = 50,
): Promise<T> {
  timeoutMs *= VM_SLOWDOWN;
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}
