// What `ubia top` shows and how keys change it, without any I/O: a state, a pure
// key → state step, and a render of one frame for a terminal of a given size.
import type { FlowRow, ProcessRow, TopResult, TopUser, UnitRow } from '../control/protocol.js';
import { fitTable, humanBitRate, humanBytes, humanRate, left, processName, right, type FitColumn } from './format.js';
import { endpoint, protocolName } from './endpoints.js';

export type SortKey = 'rate' | 'today' | 'rx' | 'tx' | 'name';

export type Level =
  | { kind: 'users' }
  | { kind: 'processes'; uid: number; user: string }
  | { kind: 'flows'; uid: number; user: string; pid: number; comm: string };

export interface TopState {
  sort: SortKey;
  /** payload bytes instead of wire bytes */
  payload: boolean;
  /** rates in bits per second */
  bits: boolean;
  /** processes under each user on the users level */
  showProcesses: boolean;
  /** each user's workloads (systemd units, Slurm jobs, containers) under them */
  showUnits: boolean;
  /** user names containing this are shown (case-insensitive) */
  filter: string;
  editingFilter: boolean;
  help: boolean;
  /** the drill-down path: users, one user's processes, one process's flows */
  path: Level[];
  /** the selected row of the current level */
  cursor: number;
  /** a line about the connection ("reconnecting…") or the last refusal */
  notice?: string;
}

export const initialState = (): TopState => ({
  sort: 'rate',
  payload: false,
  bits: false,
  showProcesses: false,
  showUnits: false,
  filter: '',
  editingFilter: false,
  help: false,
  path: [{ kind: 'users' }],
  cursor: 0,
});

export const levelOf = (s: TopState): Level => s.path[s.path.length - 1]!;

const SORT_KEYS: Record<string, SortKey> = { r: 'rate', d: 'today', i: 'rx', o: 'tx', n: 'name' };

export const HELP = [
  'keys',
  '  r  sort by rate (RX+TX)        d  sort by total today',
  '  i  sort by RX rate             o  sort by TX rate',
  '  n  sort by name',
  '  w  wire / payload bytes        b  bytes / bits per second',
  '  p  processes under each user   u  units (services, jobs, containers) under each user',
  '  /  filter users by name',
  '  ↑↓ or k j  select   Enter  drill down (user → processes → flows)',
  '  Esc  back   h or ?  this help   q  quit',
];

/** Figures of a row as the state shows them. */
interface Figures {
  name: string;
  uid: string;
  rxRate: number;
  txRate: number;
  rxTotal: number;
  txTotal: number;
}

function userFigures(u: TopUser, payload: boolean): Figures {
  return payload
    ? { name: u.user, uid: String(u.uid), rxRate: u.rxPayloadRate, txRate: u.txPayloadRate, rxTotal: u.rxPayloadBytesToday, txTotal: u.txPayloadBytesToday }
    : { name: u.user, uid: String(u.uid), rxRate: u.rxRate, txRate: u.txRate, rxTotal: u.rxBytesToday, txTotal: u.txBytesToday };
}

function unitFigures(w: UnitRow, payload: boolean): Figures {
  const name = `  [${w.unit}]`;
  return payload
    ? { name, uid: '', rxRate: w.rxPayloadRate, txRate: w.txPayloadRate, rxTotal: w.rxPayloadBytes, txTotal: w.txPayloadBytes }
    : { name, uid: '', rxRate: w.rxRate, txRate: w.txRate, rxTotal: w.rxBytes, txTotal: w.txBytes };
}

function processFigures(p: ProcessRow, payload: boolean, indent: string): Figures {
  const name = `${indent}${p.pid === 0 ? processName(p.pid, p.comm) : `${p.pid} ${p.comm}`}`;
  return payload
    ? { name, uid: '', rxRate: p.rxPayloadRate, txRate: p.txPayloadRate, rxTotal: p.rxPayloadBytes, txTotal: p.txPayloadBytes }
    : { name, uid: '', rxRate: p.rxRate, txRate: p.txRate, rxTotal: p.rxBytes, txTotal: p.txBytes };
}

const ORDER: Record<SortKey, (a: Figures, b: Figures) => number> = {
  rate: (a, b) => b.rxRate + b.txRate - (a.rxRate + a.txRate) || b.rxTotal + b.txTotal - (a.rxTotal + a.txTotal),
  today: (a, b) => b.rxTotal + b.txTotal - (a.rxTotal + a.txTotal),
  rx: (a, b) => b.rxRate - a.rxRate || b.rxTotal - a.rxTotal,
  tx: (a, b) => b.txRate - a.txRate || b.txTotal - a.txTotal,
  name: (a, b) => a.name.localeCompare(b.name),
};

/** The users the filter lets through, in the chosen order. */
export function visibleUsers(top: TopResult, s: TopState): TopUser[] {
  const f = s.filter.toLowerCase();
  return top.users
    .filter((u) => u.user.toLowerCase().includes(f))
    .sort((a, b) => ORDER[s.sort](userFigures(a, s.payload), userFigures(b, s.payload)) || a.uid - b.uid);
}

export function visibleProcesses(top: TopResult, s: TopState, uid: number): ProcessRow[] {
  const u = top.users.find((x) => x.uid === uid);
  return (u?.processes ?? []).slice().sort((a, b) => ORDER[s.sort](processFigures(a, s.payload, ''), processFigures(b, s.payload, '')) || a.pid - b.pid);
}

export function visibleFlows(flows: FlowRow[], s: TopState, pid: number): FlowRow[] {
  const total = (f: FlowRow) => (s.payload ? f.rxPayloadBytes + f.txPayloadBytes : f.rxBytes + f.txBytes);
  return flows.filter((f) => f.pid === pid).sort((a, b) => total(b) - total(a));
}

/** Rows on the current level (for the cursor's bounds). */
export function rowCount(top: TopResult, flows: FlowRow[], s: TopState): number {
  const level = levelOf(s);
  if (level.kind === 'users') return visibleUsers(top, s).length;
  if (level.kind === 'processes') return visibleProcesses(top, s, level.uid).length;
  return visibleFlows(flows, s, level.pid).length;
}

/** Terminal input → key presses: escape sequences (arrows) whole, a lone ESC, or one
 *  character (keys typed fast, or pasted, arrive in one chunk). */
export const splitKeys = (chunk: string): string[] => chunk.match(/\x1b\[[0-9;]*[A-Za-z~]|\x1bO[A-Za-z]|[\s\S]/g) ?? [];

/** One key press. `quit` ends top. */
export function press(s: TopState, key: string, top: TopResult | undefined, flows: FlowRow[]): TopState | 'quit' {
  if (s.editingFilter) {
    if (key === '\r' || key === '\n') return { ...s, editingFilter: false, cursor: 0 };
    if (key === '\x1b') return { ...s, editingFilter: false, filter: '', cursor: 0 };
    if (key === '\x7f' || key === '\b') return { ...s, filter: s.filter.slice(0, -1), cursor: 0 };
    if (key === '\x03') return 'quit';
    return /^[\x20-\x7e]+$/.test(key) ? { ...s, filter: s.filter + key, cursor: 0 } : s;
  }
  if (key === 'q' || key === 'Q' || key === '\x03') return 'quit';
  if (s.help) return key === '\x1b' || key === 'h' || key === '?' ? { ...s, help: false } : s;
  const count = top ? rowCount(top, flows, s) : 0;
  const sort = SORT_KEYS[key];
  if (sort) return { ...s, sort, cursor: 0 };
  switch (key) {
    case 'h':
    case '?':
      return { ...s, help: true };
    case 'w':
      return { ...s, payload: !s.payload };
    case 'b':
      return { ...s, bits: !s.bits };
    case 'p':
    case 'P':
      return { ...s, showProcesses: !s.showProcesses };
    case 'u':
    case 'U':
      return { ...s, showUnits: !s.showUnits };
    case '/':
      return levelOf(s).kind === 'users' ? { ...s, editingFilter: true, filter: '' } : s;
    case 'j':
    case '\x1b[B':
      return { ...s, cursor: Math.min(s.cursor + 1, Math.max(0, count - 1)) };
    case 'k':
    case '\x1b[A':
      return { ...s, cursor: Math.max(0, s.cursor - 1) };
    case '\x1b':
      return s.path.length > 1 ? { ...s, path: s.path.slice(0, -1), cursor: 0 } : s;
    case '\r':
    case '\n': {
      const level = levelOf(s);
      if (!top || count === 0) return s;
      if (level.kind === 'users') {
        const u = visibleUsers(top, s)[s.cursor]!;
        return { ...s, path: [...s.path, { kind: 'processes', uid: u.uid, user: u.user }], cursor: 0 };
      }
      if (level.kind === 'processes') {
        const p = visibleProcesses(top, s, level.uid)[s.cursor]!;
        return { ...s, path: [...s.path, { kind: 'flows', uid: level.uid, user: level.user, pid: p.pid, comm: p.comm }], cursor: 0 };
      }
      return s;
    }
  }
  return s;
}

const SORT_NAMES: Record<SortKey, string> = { rate: 'rate', today: 'today', rx: 'RX', tx: 'TX', name: 'name' };

function figureColumns(s: TopState, totalTitle: string): FitColumn<Figures>[] {
  const rate = s.bits ? humanBitRate : humanRate;
  return [
    { ...left<Figures>(s.path.length > 1 ? 'PROCESS' : 'USER / PROCESS', (r) => r.name), drop: 0, minWidth: 8 },
    { ...right<Figures>('UID', (r) => r.uid), drop: 3 },
    { ...right<Figures>('RX/s', (r) => rate(r.rxRate)), drop: 0 },
    { ...right<Figures>('TX/s', (r) => rate(r.txRate)), drop: 0 },
    { ...right<Figures>(`RX ${totalTitle}`, (r) => humanBytes(r.rxTotal)), drop: 2 },
    { ...right<Figures>(`TX ${totalTitle}`, (r) => humanBytes(r.txTotal)), drop: 1 },
  ];
}

function flowColumns(s: TopState): FitColumn<FlowRow>[] {
  const rx = (f: FlowRow) => humanBytes(s.payload ? f.rxPayloadBytes : f.rxBytes);
  const tx = (f: FlowRow) => humanBytes(s.payload ? f.txPayloadBytes : f.txBytes);
  return [
    { ...left<FlowRow>('REMOTE', (f) => endpoint(f.remoteAddress, f.remotePort, f.family)), drop: 0, minWidth: 12 },
    { ...left<FlowRow>('PROTO', (f) => protocolName(f.protocol)), drop: 2 },
    { ...right<FlowRow>('RX', rx), drop: 0 },
    { ...right<FlowRow>('TX', tx), drop: 0 },
    { ...left<FlowRow>('LOCAL', (f) => endpoint(f.localAddress, f.localPort, f.family)), drop: 3 },
  ];
}

export interface Screen {
  width: number;
  height: number;
}

const REVERSE = (line: string) => `\x1b[7m${line}\x1b[27m`;

/**
 * One frame: at most `height` lines of at most `width` visible columns. The selected row
 * is shown in reverse video when `interactive`; rows that do not fit become "+N more".
 */
export function renderTop(top: TopResult, flows: FlowRow[], s: TopState, screen: Screen, interactive = false): string[] {
  const time = new Date(top.at).toLocaleTimeString('en-GB', { hour12: false });
  const mode = `${s.payload ? 'payload' : 'wire'} ${s.bits ? 'bit/s' : 'B/s'}`;
  const header = `ubia top  ${time}  users: ${top.users.length}  sort: ${SORT_NAMES[s.sort]}  ${mode}  h: help  q: quit`;
  const level = levelOf(s);
  const where =
    level.kind === 'processes' ? `${level.user} › processes  (Esc: back)` : level.kind === 'flows' ? `${level.user} › ${level.pid} ${level.comm} › flows  (Esc: back)` : '';
  const filter = s.editingFilter ? `filter users: ${s.filter}_` : s.filter ? `filter: ${s.filter}  (/ to change)` : '';
  const second = [s.notice, where, filter].filter(Boolean).join('  ');
  const top2 = [header.slice(0, screen.width), second.slice(0, screen.width)];
  if (s.help) return [...top2, ...HELP.map((l) => l.slice(0, screen.width))].slice(0, Math.max(1, screen.height));

  let table: string[];
  let selectable: number[] = []; // table line (after the title) of each cursor position
  let empty = '';
  if (level.kind === 'flows') {
    const rows = visibleFlows(flows, s, level.pid);
    table = fitTable(flowColumns(s), rows, screen.width);
    selectable = rows.map((_, i) => i);
    if (rows.length === 0) empty = 'no open flows of this process';
  } else {
    const figures: Figures[] = [];
    if (level.kind === 'processes') {
      for (const p of visibleProcesses(top, s, level.uid)) {
        selectable.push(figures.length);
        figures.push(processFigures(p, s.payload, ''));
      }
      if (figures.length === 0) empty = 'no processes with traffic';
    } else {
      for (const u of visibleUsers(top, s)) {
        selectable.push(figures.length);
        figures.push(userFigures(u, s.payload));
        if (s.showUnits) {
          const units = (u.units ?? []).map((w) => unitFigures(w, s.payload)).sort((a, b) => ORDER[s.sort](a, b) || a.name.localeCompare(b.name));
          figures.push(...units);
        }
        if (s.showProcesses) for (const p of visibleProcesses(top, s, u.uid).slice(0, u.processes.length)) figures.push(processFigures(p, s.payload, '  '));
      }
      if (figures.length === 0) empty = s.filter ? `no user matches "${s.filter}"` : 'no traffic by any user you may see yet';
    }
    table = fitTable(figureColumns(s, level.kind === 'users' ? 'today' : 'total'), figures, screen.width);
  }

  const footer = [
    ...(empty ? [empty] : []),
    ...(level.kind !== 'flows' && (s.showProcesses || level.kind === 'processes') ? ['(process rows: bytes since the process started)'.slice(0, screen.width)] : []),
    ...(level.kind === 'users' && s.showUnits ? ['([unit] rows: bytes today, summing to their user\'s)'.slice(0, screen.width)] : []),
  ];
  const [title, ...rows] = table;
  const room = Math.max(1, screen.height - top2.length - 1 - footer.length);
  const selected = selectable[Math.min(s.cursor, selectable.length - 1)] ?? -1;
  // keep the selected row in view; the last line says how many rows are not shown
  const fits = rows.length <= room;
  const shown = fits ? room : room - 1;
  const first = fits ? 0 : Math.min(Math.max(0, selected - shown + 1), rows.length - shown);
  const body = rows.slice(first, first + shown).map((l, i) => (interactive && first + i === selected ? REVERSE(l) : l));
  const lines = [...top2, title!, ...body];
  if (!fits) lines.push(`+${rows.length - shown} more`);
  return [...lines, ...footer].slice(0, Math.max(1, screen.height));
}
