// Bytes a store takes on disk: its files that exist (a write-ahead log comes and goes).
import { statSync } from 'node:fs';

export function filesSize(...paths: string[]): number {
  let total = 0;
  for (const p of paths) {
    try {
      total += statSync(p).size;
    } catch {
      // absent: takes nothing
    }
  }
  return total;
}
