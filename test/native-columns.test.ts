// The addon's column names (native/src/meter_js.cc) are the field names src/kernel's types
// promise (native.ts's NativeMeter, over types.ts): both sides are parsed — the C++ for the
// names it sets, the TypeScript with the compiler's type checker — so a field renamed or
// added on one side only fails here, without a kernel.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const cc = readFileSync(join(ROOT, 'native/src/meter_js.cc'), 'utf8');

/** The text of the C++ function or method whose signature starts with `head`. */
function body(head: string): string {
  const at = cc.indexOf(head);
  if (at < 0) throw new Error(`meter_js.cc has no ${head}`);
  let depth = 0;
  for (let i = cc.indexOf('{', at); i < cc.length; i++) {
    if (cc[i] === '{') depth++;
    if (cc[i] === '}' && --depth === 0) return cc.slice(at, i + 1);
  }
  throw new Error(`unbalanced braces after ${head}`);
}

/** Column names a piece of meter_js.cc sets: number/bigint/dict columns, the scope and
 *  comm helpers, the six counters (Columns::counters) and flow_columns' set. */
function columnsSet(code: string): string[] {
  const names = [...code.matchAll(/\b(?:number|bigint|dict)\("(\w+)"/g)].map((m) => m[1]!);
  if (/\.scope\(/.test(code)) names.push('scope');
  if (/\.comm\(/.test(code)) names.push('comm');
  if (/\.counters\(/.test(code)) names.push(...columnsSet(body('void counters(F get)')));
  if (/flow_columns\(\w+, /.test(code)) names.push(...columnsSet(body('void flow_columns(Columns &c, Get get)')));
  return names.sort();
}

/** Object keys a piece of meter_js.cc sets with o.Set("…"). */
const keysSet = (code: string) => [...code.matchAll(/\w+\.Set\("(\w+)"/g)].map((m) => m[1]!).sort();

// the TypeScript side, as the compiler sees it
const program = ts.createProgram([join(ROOT, 'src/kernel/native.ts')], { strict: true, target: ts.ScriptTarget.ES2023, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext });
const checker = program.getTypeChecker();
const nativeTs = program.getSourceFile(join(ROOT, 'src/kernel/native.ts'))!;
function declared(name: string): ts.Type {
  let found: ts.Type | undefined;
  nativeTs.forEachChild((n) => {
    if ((ts.isInterfaceDeclaration(n) || ts.isTypeAliasDeclaration(n)) && n.name.text === name) found = checker.getTypeAtLocation(n.name);
  });
  if (!found) throw new Error(`src/kernel/native.ts declares no ${name}`);
  return found;
}
const fieldsOf = (t: ts.Type) => checker.getPropertiesOfType(t).map((p) => p.name).filter((n) => n !== 'length').sort();
const member = (t: ts.Type, name: string) => checker.getTypeOfSymbol(checker.getPropertyOfType(t, name)!);
const returned = (t: ts.Type, method: string) => member(t, method).getCallSignatures()[0]!.getReturnType();

describe('the addon and src/kernel agree on field names', () => {
  const meter = declared('NativeMeter');
  const events = declared('NativeEvents');

  it.each([
    ['readUsers', 'Napi::Value ReadUsers('],
    ['readProcesses', 'Napi::Value ReadProcesses('],
    ['readFlows', 'Napi::Value ReadFlows('],
  ])('%s', (method, cxx) => {
    expect(columnsSet(body(cxx))).toEqual(fieldsOf(returned(meter, method)));
  });

  it('the events: flowsEnded and processesExited', () => {
    const drain = body('Napi::Object Drain(');
    expect(columnsSet(drain.slice(0, drain.indexOf('Columns procs')))).toEqual(fieldsOf(member(events, 'flowsEnded')));
    expect(columnsSet(drain.slice(drain.indexOf('Columns procs')))).toEqual(fieldsOf(member(events, 'processesExited')));
  });

  it('readInterfaces and their wire counters', () => {
    const iface = checker.getIndexTypeOfType(returned(meter, 'readInterfaces'), ts.IndexKind.Number)!;
    expect(keysSet(body('Napi::Value ReadInterfaces('))).toEqual(fieldsOf(iface));
    expect(keysSet(body('Napi::Object wire_object('))).toEqual(fieldsOf(member(iface, 'total')));
  });

  it('readStats', () => {
    expect(keysSet(body('Napi::Value ReadStats('))).toEqual(fieldsOf(returned(meter, 'readStats')));
    expect(keysSet(body('Napi::Object traffic_object(')).concat(keysSet(body('Napi::Object wire_object('))).sort()).toEqual(fieldsOf(member(returned(meter, 'readStats'), 'beyondUserTable')));
  });

  it('the parsers see the columns (a broken regex would compare two empty lists)', () => {
    expect(columnsSet(body('Napi::Value ReadFlows('))).toEqual(expect.arrayContaining(['cookie', 'remoteAddress', 'comm', 'scope', 'rxPayloadBytes', 'ended']));
    expect(fieldsOf(returned(meter, 'readUsers'))).toEqual(expect.arrayContaining(['uid', 'scope', 'txBytes']));
  });
});
