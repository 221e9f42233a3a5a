// Finds the line of a key in a TOML document, so that a schema error can say
// "ubia.toml:12: ledger.flush_interval: …" instead of only a path. It understands what
// a hand-written config uses: [table] / [[array]] headers, `key = value` lines and
// dotted keys (TOML v1.0.0 §Keys, §Table, §Array of Tables); quoted keys are unquoted.
// Returns the closest line it can find: the key, else its table header, else undefined.

function splitKey(raw: string): string[] {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)/y;
  let m: RegExpExecArray | null;
  while (re.lastIndex < raw.length && (m = re.exec(raw)) !== null) {
    parts.push(m[1] ?? m[2] ?? m[3] ?? '');
    if (m[4] === '') break;
  }
  return parts;
}

export function locateKey(text: string, path: readonly (string | number)[]): number | undefined {
  const lines = text.split(/\r?\n/);
  let table: (string | number)[] = [];
  const arrayCounts = new Map<string, number>();
  let best: { line: number; depth: number } | undefined;
  const consider = (full: (string | number)[], line: number) => {
    const depth = full.length;
    if (depth > path.length) return;
    if (!full.every((k, i) => String(path[i]) === String(k))) return;
    if (!best || depth > best.depth) best = { line, depth };
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const arr = /^\[\[(.+)\]\]/.exec(line);
    const tab = arr ? undefined : /^\[(.+)\]/.exec(line);
    if (arr) {
      const keys = splitKey(arr[1]!);
      const id = keys.join('.');
      const n = arrayCounts.get(id) ?? 0;
      arrayCounts.set(id, n + 1);
      table = [...keys, n];
      consider(table, i + 1);
      continue;
    }
    if (tab) {
      table = splitKey(tab[1]!);
      consider(table, i + 1);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const keys = splitKey(line.slice(0, eq));
    if (keys.length === 0) continue;
    consider([...table, ...keys], i + 1);
  }
  return best?.line;
}
