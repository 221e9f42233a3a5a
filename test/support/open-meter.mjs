// Opens the meter from the built agent (dist/) in a fresh pin directory, the way the agent
// does; used to check what an unprivileged caller is told.
import { openMeter } from '../../dist/kernel/index.js';

try {
  const meter = openMeter({ pinDir: `/sys/fs/bpf/ubia-unpriv-${process.pid}` });
  meter.close({ detach: true });
  console.log('opened');
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
