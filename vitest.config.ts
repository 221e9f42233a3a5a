import { defineConfig } from 'vitest/config';

// Tests that load eBPF programs share the kernel's single cgroup root and pinned maps,
// so test files run one at a time; they are real-kernel tests, not unit tests.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
