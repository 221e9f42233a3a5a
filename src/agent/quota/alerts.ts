// What a quota alert does: one structured log line (the journal), a line on the user's
// terminals when the rule asks for it, and the rule's exec hook
// with the facts in its environment — run with a timeout, each failure logged, retried a
// bounded number of times with a growing delay, a few hooks at a time (a period's start
// can bring thousands of users to a threshold at once).
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import { humanBytes } from '../../core/units.js';
import type { QuotaAlert } from './engine.js';
import { tellTerminals, terminalsOf } from './terminals.js';

/** hook runs at once; more wait their turn */
const CONCURRENT_HOOKS = 4;
/** hook runs waiting, at most; past it an alert's hook is dropped (and logged) */
const MAX_WAITING = 10_000;

export interface QuotaAlerts {
  alert(a: QuotaAlert): void;
  /** stops retries and queued runs (running ones finish on their own, bounded by their timeout) */
  close(): void;
}

/** The hook's environment: the alert's facts and a fixed PATH, nothing of the agent's own. */
export function hookEnvironment(a: QuotaAlert): Record<string, string> {
  return {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    USER: a.user,
    UID: String(a.uid),
    USED: String(a.usedBytes),
    LIMIT: String(a.limitBytes),
    PERCENT: String(a.percent),
    PERIOD: a.period.kind,
    PERIOD_END: new Date(a.period.endMs).toISOString(),
    ACTION: a.rule.actionText,
  };
}

/** The alert as the user reads it on their terminal. */
export function terminalMessage(a: QuotaAlert): string {
  const until = new Date(a.period.endMs).toLocaleString('sv-SE');
  const then = a.rule.action.kind === 'alert' ? '' : `; at 100 % your network traffic is ${a.rule.action.kind === 'block' ? 'blocked' : `held to ${a.rule.actionText.slice('throttle:'.length)}`} until then`;
  return `ubia: ${a.user}, you have used ${a.percent} % of your network quota: ${humanBytes(a.usedBytes)} of ${humanBytes(a.limitBytes)} this ${a.period.kind}, which ends ${until}${then}.`;
}

export function createQuotaAlerts(logger: Logger, retryDelayMs = 10_000): QuotaAlerts {
  let running = 0;
  const waiting: (() => void)[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const next = () => {
    while (!closed && running < CONCURRENT_HOOKS && waiting.length) {
      running++;
      waiting.shift()!();
    }
  };

  const run = (a: QuotaAlert, attempt: number) => {
    const hook = a.rule.hooks!;
    const facts = { uid: a.uid, user: a.user, percent: a.percent, exec: hook.exec, attempt: attempt + 1 };
    execFile(hook.exec, [], { env: hookEnvironment(a), timeout: hook.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 }, (err, _stdout, stderr) => {
      running--;
      next();
      if (!err) return logger.debug(facts, 'quota hook ran');
      const why = err.killed ? `killed after its ${hook.timeoutMs / 1000} s timeout` : err.code !== undefined ? `exit ${String(err.code)}` : err.message;
      const detail = { ...facts, why, stderr: stderr.slice(0, 1000) };
      if (attempt >= hook.retries) return logger.error(detail, `quota hook failed ${attempt + 1} times: gave up on this alert`);
      const delay = retryDelayMs * 2 ** attempt;
      logger.warn({ ...detail, retryInMs: delay }, 'quota hook failed; will try again');
      const t = setTimeout(() => {
        timers.delete(t);
        enqueue(a, attempt + 1);
      }, delay);
      t.unref();
      timers.add(t);
    });
  };

  const enqueue = (a: QuotaAlert, attempt: number) => {
    if (closed) return;
    if (waiting.length >= MAX_WAITING) return logger.error({ uid: a.uid, percent: a.percent }, `quota hook not run: ${MAX_WAITING} runs already wait`);
    waiting.push(() => run(a, attempt));
    next();
  };

  return {
    alert(a) {
      logger.warn(
        { quota: { uid: a.uid, user: a.user, usedBytes: a.usedBytes, limitBytes: a.limitBytes, percent: a.percent, period: a.period.kind, periodEnd: new Date(a.period.endMs).toISOString(), action: a.rule.actionText, rule: a.rule.match } },
        `quota: ${a.user} reached ${a.percent} % of ${humanBytes(a.limitBytes)} this ${a.period.kind} (${humanBytes(a.usedBytes)} used)`,
      );
      if (a.rule.terminals) {
        const told = tellTerminals(a.uid, terminalsOf(a.user), terminalMessage(a));
        logger.debug({ uid: a.uid, terminals: told }, 'quota alert written to the user\'s terminals');
      }
      if (a.rule.hooks) enqueue(a, 0);
    },
    close() {
      closed = true;
      waiting.length = 0;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
}
