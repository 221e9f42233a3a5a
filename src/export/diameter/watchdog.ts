// The RFC 3539 §3.4 watchdog of one peer connection: after Tw without traffic from the
// peer, a DWR; a DWR unanswered for another Tw makes the peer SUSPECT (its requests go
// elsewhere); one more Tw and the connection is given up. Any message from the peer
// resets the clock; the DWA of a suspect peer makes it OKAY again.

export interface WatchdogEvents {
  /** time for a DWR (RFC 6733 §5.5.1) */
  sendDwr(): void;
  /** the DWR went unanswered: the peer is SUSPECT */
  suspect(): void;
  /** a suspect peer answered its DWR: OKAY again */
  recovered(): void;
  /** no answer for two Tw: close the connection (DOWN) */
  dead(idleMs: number): void;
}

export interface Watchdog {
  /** the connection is open: watch it (RFC 3539 INITIAL → OKAY) */
  start(): void;
  /** a message arrived from the peer: it is alive */
  heard(): void;
  /** our DWR was answered */
  dwaReceived(): void;
  /** our DWR got a malformed answer: the peer is alive, though not proven well */
  dwaMalformed(): void;
  stop(): void;
}

export function createWatchdog(watchdogMs: number, on: WatchdogEvents): Watchdog {
  let timer: NodeJS.Timeout | undefined;
  let lastReceivedMs = 0;
  let dwrOutstanding = false;
  let suspect = false;

  // RFC 3539 §3.4.1: Tw with jitter of up to ±2 s (scaled down for short test intervals)
  function twMs(): number {
    const jitter = Math.min(2000, watchdogMs / 4);
    return watchdogMs + (Math.random() * 2 - 1) * jitter;
  }

  function onTimer(): void {
    const idleMs = Date.now() - lastReceivedMs;
    if (!dwrOutstanding && idleMs < watchdogMs) {
      timer = setTimeout(onTimer, watchdogMs - idleMs);
      return;
    }
    if (suspect) return on.dead(idleMs);
    if (dwrOutstanding) {
      suspect = true;
      on.suspect();
    } else {
      dwrOutstanding = true;
      on.sendDwr();
    }
    timer = setTimeout(onTimer, twMs());
  }

  return {
    start() {
      lastReceivedMs = Date.now();
      dwrOutstanding = false;
      suspect = false;
      clearTimeout(timer);
      timer = setTimeout(onTimer, twMs());
    },
    heard() {
      lastReceivedMs = Date.now();
    },
    dwaReceived() {
      dwrOutstanding = false;
      if (!suspect) return;
      suspect = false;
      on.recovered();
    },
    dwaMalformed() {
      dwrOutstanding = false;
    },
    stop() {
      clearTimeout(timer);
    },
  };
}
