// Answers `flows.query` from the flow store: the query compiled to one SQL statement with
// bound values, restricted to the uids the caller's Scope sees unless they are an admin.
import { bigIntToAddress } from '../history/address.js';
import { compileQuery, PROTOCOLS, QueryError, RECORD_FIELDS, type GroupKey } from '../history/query.js';
import type { FlowStore } from '../history/store.js';
import type { FlowQueryResult, Request } from './protocol.js';
import type { Scope } from './scope.js';
import { ControlError } from './server.js';

type FlowQueryRequest = Extract<Request, { op: 'flows.query' }>;

const PROTOCOL_NAMES = new Map(Object.entries(PROTOCOLS).map(([name, n]) => [n, name]));

/** A stored value made JSON-safe: 128-bit addresses as text, protocols by name where they have one. */
export function cell(kind: GroupKey['kind'] | 'record', value: unknown, store: FlowStore): string | number | null {
  if (value === null || value === undefined) return null;
  if (kind === 'user') return store.userName(value as number);
  if (typeof value === 'bigint') return kind === 'address' || kind === 'record' ? bigIntToAddress(value) : Number(value);
  if (kind === 'protocol') return PROTOCOL_NAMES.get(value as number) ?? (value as number);
  return value as string | number;
}

/** The uids whose records the caller may query (undefined: all), narrowed by `-u`. */
function uidsInSight(store: FlowStore, scope: Scope, user: string | undefined): number[] | undefined {
  if (scope.role === 'admin') return undefined; // -u is matched against the stored names: a user since deleted is still found
  // an auditor is shown pseudonyms and anonymised addresses, but the filter language names
  // real users, hosts and networks: answering it would tell who talked to whom
  if (scope.role === 'auditor') throw new ControlError('forbidden', 'the flow history names real users and addresses, which an auditor does not see: use `ubia flows` (live, pseudonymised) or `ubia users`');
  const wanted = scope.userFilter(user);
  return store.uids().filter((uid) => scope.sees(uid) && wanted(uid));
}

export async function queryFlows(store: FlowStore | undefined, req: FlowQueryRequest, scope: Scope): Promise<FlowQueryResult> {
  if (!store) throw new ControlError('internal', 'the agent keeps no flow history ([history] enabled = false, or the store did not open: see the agent log)');
  const uids = uidsInSight(store, scope, req.user);
  let compiled;
  try {
    compiled = compileQuery({ ...req, fromMs: req.from, toMs: req.to, user: uids === undefined ? req.user : undefined, uids });
  } catch (e) {
    if (e instanceof QueryError) throw new ControlError('bad_request', e.message);
    throw e;
  }
  const found = await store.query(compiled);
  const keys = compiled.keys;
  const rows = found.map((r) => {
    const out: Record<string, string | number | null> = {};
    if (keys.length === 0) {
      for (const f of RECORD_FIELDS) out[f] = cell(f === 'protocol' ? 'protocol' : 'record', r[f], store);
      return out;
    }
    keys.forEach((k, i) => (out[k.name] = cell(k.kind, r[`k${i}`], store)));
    for (const [name, v] of Object.entries(r)) if (!/^k\d+$/.test(name)) out[name] = cell('number', v, store);
    return out;
  });
  return { from: new Date(req.from).toISOString(), to: new Date(req.to).toISOString(), keys: keys.map((k) => k.name), rows };
}
