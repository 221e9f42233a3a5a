// `npm run chaos`: the chaos suite alone (not part of `npm test`: it takes ~3 minutes and
// the whole machine's attention). Run as root.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['bench/chaos.ts'],
    testTimeout: 120_000,
    hookTimeout: 400_000,
    reporters: ['verbose'],
  },
});
