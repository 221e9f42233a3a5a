// A 32-byte secret kept in a file only root may read: read it, or create it on first use
// (mode 0600, exclusive create, so two agents cannot each write their own).
import { randomBytes } from 'node:crypto';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readCryptoPanKey } from './cryptopan.js';

export function readOrCreateSecret(path: string): Buffer {
  try {
    writeFileSync(path, randomBytes(32), { mode: 0o600, flag: 'wx' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
      return readOrCreateSecret(path);
    }
    if (code !== 'EEXIST') throw new Error(`cannot create the secret ${path}: ${(e as Error).message}`);
  }
  const { mode, uid } = statSync(path);
  // anyone else who can read it can undo the pseudonyms
  if (uid !== 0 || (mode & 0o077) !== 0) {
    throw new Error(`the secret ${path} must be owned by root and not readable by others (it is mode ${(mode & 0o777).toString(8)}, owner uid ${uid}): chown root: ${path}; chmod 600 ${path}`);
  }
  return readCryptoPanKey(path);
}
