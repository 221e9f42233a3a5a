// Tokens of the flow query language, each with the column it starts at (1-based), so an
// error can point at the word that is wrong.

export interface Token {
  text: string;
  column: number;
}

/** A query that does not parse: `option` names the flag, `column` the offending token. */
export class QueryError extends Error {
  constructor(
    readonly option: string,
    readonly detail: string,
    readonly column: number | undefined,
  ) {
    super(`${option}: ${detail}${column === undefined ? '' : ` at column ${column}`}`);
  }
}

const OPERATORS = ['>=', '<=', '!=', '==', '>', '<', '=', '(', ')', '!', ','];

export function tokenize(option: string, text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    if (/\s/.test(text[i]!)) {
      i++;
      continue;
    }
    const quote = text[i];
    if (quote === '"' || quote === "'") {
      // a quoted word keeps spaces and operator characters (a comm or a path may have them)
      const end = text.indexOf(quote, i + 1);
      if (end === -1) throw new QueryError(option, `unterminated ${quote === '"' ? 'double' : 'single'} quote`, i + 1);
      out.push({ text: text.slice(i + 1, end), column: i + 1 });
      i = end + 1;
      continue;
    }
    const op = OPERATORS.find((o) => text.startsWith(o, i));
    if (op) {
      out.push({ text: op, column: i + 1 });
      i += op.length;
      continue;
    }
    const start = i;
    while (i < text.length && !/\s/.test(text[i]!) && !OPERATORS.some((o) => text.startsWith(o, i))) i++;
    out.push({ text: text.slice(start, i), column: start + 1 });
  }
  return out;
}

/** A cursor over tokens, with errors that name the option and point at the token. */
export class Cursor {
  private at = 0;
  constructor(
    readonly option: string,
    private readonly tokens: Token[],
    private readonly endColumn: number,
  ) {}

  peek(): Token | undefined {
    return this.tokens[this.at];
  }

  next(what: string): Token {
    const t = this.tokens[this.at];
    if (!t) throw this.fail(`expected ${what}`, this.endColumn);
    this.at++;
    return t;
  }

  /** Takes the next token when it is one of `words` (case-insensitive). */
  accept(...words: string[]): Token | undefined {
    const t = this.peek();
    if (t && words.includes(t.text.toLowerCase())) {
      this.at++;
      return t;
    }
    return undefined;
  }

  done(): boolean {
    return this.at >= this.tokens.length;
  }

  fail(detail: string, column: number | undefined = this.peek()?.column ?? this.endColumn): QueryError {
    return new QueryError(this.option, detail, column);
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3, m: 1e6, g: 1e9, t: 1e12,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** "10M" → 10,000,000; "1.5GiB" → 1.5·2^30; plain integers as they are. */
export function parseAmount(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  return unit === undefined ? undefined : Math.round(Number(m![1]) * unit);
}
