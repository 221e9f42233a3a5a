// `ubia top`: users by current rate, their totals since the start of the day, and on
// `p` each user's top processes. Full-screen on a TTY (q quits), plain frames otherwise.
import { connectControl } from '../control/client.js';
import type { TopResult } from '../control/protocol.js';
import { humanBytes, humanRate, left, processName, right, table, type Column } from './format.js';

interface Row {
  name: string;
  uid: string;
  rx: string;
  tx: string;
  rxToday: string;
  txToday: string;
}

const COLUMNS: Column<Row>[] = [
  left('USER / PROCESS', (r) => r.name),
  right('UID', (r) => r.uid),
  right('RX/s', (r) => r.rx),
  right('TX/s', (r) => r.tx),
  right('RX today', (r) => r.rxToday),
  right('TX today', (r) => r.txToday),
];

const NAME_WIDTH = 24;

export interface TopView {
  width: number;
  height: number;
  showProcesses: boolean;
}

/** One frame of text lines, at most `height` lines of at most `width` columns. */
export function renderTop(top: TopResult, view: TopView): string[] {
  const rows: Row[] = [];
  for (const u of top.users) {
    rows.push({
      name: u.user.slice(0, NAME_WIDTH),
      uid: String(u.uid),
      rx: humanRate(u.rxRate),
      tx: humanRate(u.txRate),
      rxToday: humanBytes(u.rxBytesToday),
      txToday: humanBytes(u.txBytesToday),
    });
    if (!view.showProcesses) continue;
    for (const p of u.processes) {
      rows.push({
        name: (p.pid === 0 ? `  ${processName(p.pid, p.comm)}` : `  ${p.pid} ${p.comm}`).slice(0, NAME_WIDTH),
        uid: '',
        rx: humanRate(p.rxRate),
        tx: humanRate(p.txRate),
        rxToday: humanBytes(p.rxBytes),
        txToday: humanBytes(p.txBytes),
      });
    }
  }
  const time = new Date(top.at).toLocaleTimeString('en-GB', { hour12: false });
  const header = `ubia top  ${time}  users: ${top.users.length}  poll: ${top.pollIntervalSeconds}s  p: processes  q: quit`;
  const lines = [header.slice(0, view.width), '', ...table(COLUMNS, rows, view.width)];
  if (view.showProcesses) lines.push('', '(process rows: bytes since the process started)'.slice(0, view.width));
  if (top.users.length === 0) lines.push('no traffic by any user you may see yet');
  return lines.slice(0, Math.max(1, view.height));
}

export interface TopOptions {
  socket: string;
  intervalSeconds: number;
  once: boolean;
  /** frames to print when stdout is not a terminal; 0 = until interrupted */
  iterations: number;
  processes: number;
}

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[?25l';
const ALT_SCREEN_OFF = '\x1b[?25h\x1b[?1049l';

export async function runTop(opts: TopOptions): Promise<void> {
  const conn = await connectControl(opts.socket);
  const fetch = () => conn.request<TopResult>({ op: 'top', processes: opts.processes });
  const out = process.stdout;
  const interactive = out.isTTY && process.stdin.isTTY && !opts.once;

  if (!interactive) {
    try {
      for (let i = 0; opts.once ? i < 1 : opts.iterations === 0 || i < opts.iterations; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, opts.intervalSeconds * 1000));
        const frame = renderTop(await fetch(), { width: out.columns ?? 80, height: Infinity, showProcesses: true });
        out.write(`${i > 0 ? '\n' : ''}${frame.join('\n')}\n`);
      }
    } finally {
      conn.close();
    }
    return;
  }

  let showProcesses = false;
  let last: TopResult | undefined;
  const draw = () => {
    if (!last) return;
    const frame = renderTop(last, { width: out.columns ?? 80, height: out.rows ?? 24, showProcesses });
    out.write(`\x1b[H\x1b[2J${frame.join('\n')}`);
  };
  await new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (err?: Error) => {
      clearTimeout(timer);
      process.stdin.setRawMode(false);
      process.stdin.pause();
      out.off('resize', draw);
      out.write(ALT_SCREEN_OFF);
      conn.close();
      if (err) reject(err);
      else resolve();
    };
    const tick = async () => {
      try {
        last = await fetch();
        draw();
        timer = setTimeout(() => void tick(), opts.intervalSeconds * 1000);
      } catch (e) {
        finish(e as Error);
      }
    };
    out.write(ALT_SCREEN_ON);
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (key: Buffer) => {
      const k = key.toString();
      if (k === 'q' || k === 'Q' || k === '\x03') finish();
      else if (k === 'p' || k === 'P') {
        showProcesses = !showProcesses;
        draw();
      }
    });
    out.on('resize', draw);
    void tick();
  });
}
