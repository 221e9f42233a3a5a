// URL credentials kept out of what the agent shows or logs (its log lines, `ubia status`).
// RFC 3986 §3.2.1: userinfo ("user:password") sits between "scheme://" and "@"; the
// RFC itself deprecates a password there. Operators still write one into exporter
// endpoints, so nothing the agent shows or logs may repeat it.
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"]+@/gi;

/** The text with the userinfo of every URL in it replaced by "***". */
export function redactCredentials(text: string): string {
  return text.replace(URL_USERINFO, '$1***@');
}

/** A JSON-like value with every string in it passed through redactCredentials. */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redactCredentials(value) as T;
  if (Array.isArray(value)) return value.map(redactDeep) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v)])) as T;
  }
  return value;
}
