// `ubia top`: the live view (top-view.ts) driven by keys on a terminal, plain frames
// when stdout is not one, or one JSON document per interval (--json). An agent that
// goes away while top runs is waited for ("reconnecting…"); one that is not running at
// the start is an error (exit 2, with how to start it).
import { AgentReplyError, connectControl, type ControlConnection } from '../control/client.js';
import type { FlowRow, FlowsResult, TopResult } from '../control/protocol.js';
import { csvLines } from './csv.js';
import type { OutputFormat } from './views.js';
import { initialState, levelOf, press, renderTop, splitKeys, type TopState } from './top-view.js';

export interface TopOptions {
  socket: string;
  intervalSeconds: number;
  once: boolean;
  /** frames to print when stdout is not a terminal; 0 = until interrupted */
  iterations: number;
  processes: number;
  format: OutputFormat;
}

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[?25l';
const ALT_SCREEN_OFF = '\x1b[?25h\x1b[?1049l';
const RECONNECT_EVERY_MS = 500;
/** processes asked for while one user's are shown */
const DRILL_PROCESSES = 100;

const TOP_CSV = ['at', 'uid', 'user', 'rxRate', 'txRate', 'rxPayloadRate', 'txPayloadRate', 'rxBytesToday', 'txBytesToday', 'rxPayloadBytesToday', 'txPayloadBytesToday'] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function printFrames(conn: ControlConnection, opts: TopOptions): Promise<void> {
  const out = process.stdout;
  const frames = opts.once ? 1 : opts.iterations;
  for (let i = 0; frames === 0 || i < frames; i++) {
    if (i > 0) await sleep(opts.intervalSeconds * 1000);
    const top = await conn.request<TopResult>({ op: 'top', processes: opts.processes });
    if (opts.format === 'json') out.write(`${JSON.stringify(top)}\n`);
    else if (opts.format === 'csv') {
      const rows = top.users.map(({ processes, ...u }) => ({ at: top.at, ...u }));
      out.write(`${csvLines<(typeof rows)[number]>(TOP_CSV, rows, i === 0).join('\n')}\n`);
    } else {
      const s = { ...initialState(), showProcesses: true };
      const frame = renderTop(top, [], s, { width: out.columns ?? 80, height: Infinity });
      out.write(`${i > 0 ? '\n' : ''}${frame.join('\n')}\n`);
    }
  }
}

export async function runTop(opts: TopOptions): Promise<void> {
  let conn = await connectControl(opts.socket);
  const out = process.stdout;
  if (opts.format !== 'table' || opts.once || !out.isTTY || !process.stdin.isTTY) {
    try {
      await printFrames(conn, opts);
    } finally {
      conn.close();
    }
    return;
  }

  let state: TopState = initialState();
  let last: TopResult | undefined;
  let flows: FlowRow[] = [];
  let connected = true;
  const draw = () => {
    if (!last) return;
    const frame = renderTop(last, flows, state, { width: out.columns ?? 80, height: out.rows ?? 24 }, true);
    out.write(`\x1b[H\x1b[2J${frame.join('\n')}`);
  };

  const fetch = async () => {
    const level = levelOf(state);
    last = await conn.request<TopResult>({ op: 'top', processes: level.kind === 'users' ? opts.processes : DRILL_PROCESSES });
    flows = level.kind === 'flows' ? (await conn.request<FlowsResult>({ op: 'flows', user: level.user })).active : [];
  };

  await new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = () => {
      done = true;
      clearTimeout(timer);
      process.stdin.setRawMode(false);
      process.stdin.pause();
      out.off('resize', draw);
      out.write(ALT_SCREEN_OFF);
      conn.close();
      resolve();
    };
    const reconnect = async () => {
      while (!done) {
        try {
          conn = await connectControl(opts.socket);
          connected = true;
          state = { ...state, notice: undefined };
          return;
        } catch {
          await sleep(RECONNECT_EVERY_MS);
        }
      }
    };
    let running = false;
    const tick = async () => {
      if (running) return;
      running = true;
      try {
        await fetch();
        state = { ...state, notice: undefined };
      } catch (e) {
        if (e instanceof AgentReplyError) state = { ...state, notice: e.message };
        else {
          // the agent restarted or went away: keep the last frame and wait for it
          connected = false;
          conn.close();
          state = { ...state, notice: 'reconnecting…' };
          draw();
          await reconnect();
          running = false;
          if (done) return;
          return void tick();
        }
      }
      running = false;
      if (done) return;
      draw();
      timer = setTimeout(() => void tick(), opts.intervalSeconds * 1000);
    };
    out.write(ALT_SCREEN_ON);
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (chunk: Buffer) => {
      const before = levelOf(state);
      for (const key of splitKeys(chunk.toString())) {
        const next = press(state, key, last, flows);
        if (next === 'quit') return finish();
        state = next;
      }
      const levelChanged = levelOf(state) !== before;
      draw();
      // a new level needs other data: fetch it now rather than at the next interval
      if (levelChanged && connected) {
        clearTimeout(timer);
        void tick();
      }
    });
    out.on('resize', draw);
    void tick();
  });
}
