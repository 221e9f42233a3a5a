// The system tier's global set-up: the tests run the built agent (dist/, as bin/ubia does),
// so they build it first, and a type error fails the run instead of testing stale code.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

export default function build(): void {
  // in the kernel matrix's VMs (test/kernel-vm) the guest sees the host's tree, whose run
  // built dist/ before it booted them; tsc there would take minutes under TCG
  if (process.env.UBIA_KERNEL_VM) return;
  try {
    execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit', timeout: 300_000 });
  } catch {
    throw new Error('`tsc -p tsconfig.json` failed (errors above): fix them, the system tests run the built dist/');
  }
}
