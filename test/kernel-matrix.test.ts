// The kernel matrix (issue 11): Debian's own kernels, booted under qemu by test/kernel-vm/run,
// each running the real-kernel meter tests inside: the agent's hooks against the kernel
// (kernel-vm/features.test.ts), the meter's exactness tests (every test/meter*.test.ts) and
// quota enforcement (test/quota-enforce.test.ts).
// The rest of the suite runs on the host's kernel only. Kernels boot one after another
// (one VM at a time on the machine); a kernel whose tests fail fails here, file by file,
// with the failing tests' own messages. The guests' output streams to stdout, prefixed.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/agent.js';

const KERNELS = ['5.10', '6.1', '6.12', 'newest'];
const GUEST_TESTS = [
  'test/kernel-vm/features.test.ts',
  // quota enforcement (issue 14): its programs load and block/throttle from 5.10 up
  'test/quota-enforce.test.ts',
  ...readdirSync(join(ROOT, 'test'))
    .filter((f) => /^meter.*\.test\.ts$/.test(f))
    .map((f) => `test/${f}`),
];
// Bound on one kernel (boot and its tests): over twice what they take under TCG (see
// test/kernel-vm/README.md; quota-enforce.test.ts adds ≈ 2.5 min), and the four together
// stay inside CI's 45 minutes even when all hang.
const VM_SECONDS = 600;
const REPORT = '@@ubia-kernel-matrix-report@@';

interface FileResult {
  name: string;
  status: string;
  message?: string;
  assertionResults: { fullName: string; status: string; failureMessages: string[] }[];
}

interface GuestRun {
  code: number | null;
  output: string;
  files: FileResult[];
}

/** A meter left attached for the guest's life (pinned, its process gone). Under qemu's TCG
 *  the kernel's patching of a static branch while another vCPU runs through it killed
 *  Debian's 7.3 guest twice, each time with RIP inside the patched jump of a cgroup_skb
 *  hook (ip6_finish_output, sk_filter_trim_cap): the static keys each test's meter turns
 *  on and off as it attaches and detaches. This meter holds them on; the tests still
 *  attach and detach their own. */
const holdKeys = `import('./dist/kernel/index.js').then(({ openMeter }) => openMeter({ pinDir: '/sys/fs/bpf/ubia-vm-keys' }).close())`;

/** The guest's command: the tests with this Node, then vitest's JSON report after a marker
 *  line. Time bounds inside stretch: code there runs 12–17× slower than on the host. */
const guestScript = `
${process.execPath} --input-type=module -e "${holdKeys}" || exit 1
${process.execPath} node_modules/vitest/vitest.mjs run --project system ${GUEST_TESTS.join(' ')} \\
  --testTimeout=300000 --hookTimeout=300000 \\
  --reporter=default --reporter=json --outputFile.json=/tmp/ubia-matrix.json
code=$?
echo ${REPORT}
cat /tmp/ubia-matrix.json
exit $code
`;

function runInVm(kernel: string): Promise<GuestRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(ROOT, 'test/kernel-vm/run'), ['--kernel', kernel, '--timeout', String(VM_SECONDS), '--', 'bash', '-c', guestScript], {
      cwd: ROOT,
      // the guest's vitest is its own run, not a worker of this one
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST'))), NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let inReport = false;
    let report = '';
    const show = (line: string) => {
      output += `${line}\n`;
      process.stdout.write(`[${kernel}] ${line}\n`);
    };
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === REPORT) inReport = true;
      else if (inReport) report += line;
      else show(line);
    });
    createInterface({ input: child.stderr! }).on('line', show); // the runner's own words
    child.on('error', reject);
    child.on('close', (code) => {
      let files: FileResult[] = [];
      try {
        files = (JSON.parse(report) as { testResults: FileResult[] }).testResults;
      } catch {
        // no report: the guest died or timed out; the output says how
      }
      resolve({ code, output, files });
    });
  });
}

const tail = (text: string, lines: number) => text.trimEnd().split('\n').slice(-lines).join('\n');

/** What a failed file says: each failed test with the start of its message. */
function failures(file: FileResult): string {
  const failed = file.assertionResults.filter((a) => a.status === 'failed');
  if (failed.length === 0) return file.message ?? `status ${file.status}`;
  const message = (m = '') =>
    m
      .split('\n')
      .filter((l) => !/^\s+at /.test(l)) // the stack says nothing about the kernel
      .slice(0, 40)
      .join('\n');
  return failed.map((a) => `✗ ${a.fullName}\n${message(a.failureMessages[0])}`).join('\n\n');
}

for (const kernel of KERNELS) {
  describe(`Debian's ${kernel} kernel`, () => {
    let run: GuestRun;
    // the runner bounds the VM; beyond that, the fetch and a wait for another developer's VM
    beforeAll(async () => {
      run = await runInVm(kernel);
    }, (2 * VM_SECONDS + 120) * 1000);

    for (const file of GUEST_TESTS) {
      it(`passes ${file}`, () => {
        const result = run.files.find((f) => f.name.endsWith(file));
        if (!result) throw new Error(`${kernel}: no result for ${file} (the runner exited ${run.code}); the guest's last output:\n${tail(run.output, 60)}`);
        if (result.status !== 'passed') throw new Error(`${kernel}: ${file} failed:\n\n${failures(result)}`);
        expect(result.assertionResults.length).toBeGreaterThan(0);
      });
    }
  });
}
