// How a configuration key is declared, for the agent's own tables (config/schema.ts) and
// the exporters' (export/*/config.ts) alike: a zod schema, its default and its meaning.
// The description ends with the default, so the two cannot disagree; config/document.ts
// renders packaging/ubia.toml, the README's tables and ubia.toml(5) from them.
import { z } from 'zod';

/** A duration in seconds, min..max (fractions allowed unless `.int()` is added). */
export const seconds = (min: number, max: number) => z.number().min(min).max(max);
export const integer = (min: number, max: number) => z.number().int().min(min).max(max);
export const text = () => z.string().min(1);

/** A key with its default; the description (what config errors say is allowed) ends
 *  with that default. */
export function setting<T extends z.ZodType>(schema: T, fallback: z.output<T>, meaning: string) {
  return schema.default(fallback as never).describe(`${meaning}; default ${fallback === '' ? '""' : String(fallback)}`);
}
