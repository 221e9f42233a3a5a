import { defineConfig } from 'vitest/config';

// Two tiers. `unit`: no root, no kernel programs, no peers outside the test process —
// files run in parallel (`npm test`). `system`: root, the real kernel meter, real peers
// (freeDiameter, PostgreSQL, tshark, libfixbuf, pmacct, systemd) and the built agent;
// these files share the kernel's single cgroup root and pinned maps, so they run one at
// a time, after a global set-up that builds dist/ and fails on type errors
// (`scripts/setup test` runs both tiers).
export const UNIT_TESTS = [
  'test/agent-accounting.test.ts',
  'test/agent-exporter-set.test.ts',
  'test/cli-docs.test.ts',
  'test/cli-when.test.ts',
  'test/config.test.ts',
  'test/config-documents.test.ts',
  'test/diameter-config.test.ts',
  'test/diameter-failover.test.ts',
  'test/diameter-peer.test.ts',
  'test/diameter-protocol.test.ts',
  'test/diameter-sessions.test.ts',
  'test/history-query.test.ts',
  'test/history-store.test.ts',
  'test/ipfix-encoding.test.ts',
  'test/ipfix-udp.test.ts',
  'test/ledger.test.ts',
  'test/units-rules.test.ts',
  'test/native-columns.test.ts',
  'test/package-config.test.ts',
  'test/privacy-address.test.ts',
  'test/prometheus-endpoint.test.ts',
  'test/quota-policy.test.ts',
  'test/quota-verdicts.test.ts',
];

export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        test: {
          name: 'unit',
          include: UNIT_TESTS,
          testTimeout: 30_000,
          // these files mostly wait on timers and loopback sockets, not on the CPU
          maxWorkers: 4,
        },
      },
      {
        test: {
          name: 'system',
          include: ['test/**/*.test.ts'],
          exclude: UNIT_TESTS,
          globalSetup: ['test/support/build.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
