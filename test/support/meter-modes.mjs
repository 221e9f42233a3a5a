// Opens the built meter (dist/) in each mode in a fresh pin directory and prints what
// this kernel gives: the mode in use and every hook. For checking kernels in VMs
// (test/kernel-vm in the harness); exits non-zero when the default mode does not open.
import { openMeter } from '../../dist/kernel/index.js';

let failed = false;
for (const mode of ['default', 'precise']) {
  try {
    const meter = openMeter({ pinDir: `/sys/fs/bpf/ubia-modes-${process.pid}-${mode}`, mode });
    const st = meter.status();
    console.log(`${st.kernelRelease}: ${mode} requested, ${st.mode} in use`);
    for (const h of st.hooks) console.log(`  ${h.active ? '[x]' : h.available ? '[ ]' : '[-]'} ${h.name}: ${h.detail}`);
    meter.close({ detach: true });
  } catch (err) {
    console.log(`${mode}: ${err.message}`);
    failed ||= mode === 'default';
  }
}
process.exit(failed ? 1 : 0);
