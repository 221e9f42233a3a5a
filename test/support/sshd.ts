// A real OpenSSH server (Debian's /usr/sbin/sshd) for the tests that need one: its own
// config, host key and authorized keys in a temp dir, listening on the addresses given,
// letting in only the users given by public key. Root accepts; a privilege-separated
// child runs the key exchange, and after authentication a child running as the user
// serves the session — the process layout every SSH login on a real host has.
import { spawn } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, sh, type TestUser } from './testbed.js';
import { sleep } from './wait.js';

export interface Sshd {
  port: number;
  /** the private key sshd accepts for every user it lets in (root's, mode 0600) */
  clientKey: string;
  /** ssh(1)/scp(1) options for a non-interactive client of this server (the port is
   *  -p for ssh, -P for scp: not among them) */
  clientOptions: string[];
  /** what sshd has logged so far (-e: its log on stderr) */
  log(): string;
  stop(): void;
}

/** A user sshd lets in: a login shell (sessions run through it), no password but not
 *  locked (sshd refuses locked accounts), a home of its own under dir. */
export function createLoginUser(dir: string, name: string): TestUser & { home: string } {
  const home = join(dir, `home-${name}`);
  sh('useradd', ['--no-create-home', '--home-dir', home, '--shell', '/bin/sh', '--user-group', name]);
  sh('usermod', ['--password', '*', name]);
  const user = { name, home, uid: Number(sh('id', ['-u', name]).trim()), gid: Number(sh('id', ['-g', name]).trim()) };
  mkdirSync(home);
  chownSync(home, user.uid, user.gid);
  return user;
}

/** Starts sshd in dir (which must be readable by the users: their authorized keys are
 *  there) listening on each address of `listen`; resolves once it listens. */
export async function startSshd(opts: { dir: string; listen: string[]; users: string[] }): Promise<Sshd> {
  const { dir } = opts;
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
  mkdirSync(join(dir, 'keys'));
  for (const user of opts.users) writeFileSync(join(dir, 'keys', user), readFileSync(join(dir, 'client_key.pub')));
  mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      ...opts.listen.map((a) => `ListenAddress ${a}`),
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'keys')}/%u`,
      'StrictModes no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin no',
      `AllowUsers ${opts.users.join(' ')}`,
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  sshd.stderr!.on('data', (d) => (log += d));
  const listening = () => (log.match(/Server listening/g) ?? []).length >= opts.listen.length;
  for (let i = 0; i < 100 && !listening(); i++) await sleep(50);
  if (!listening()) {
    sshd.kill('SIGTERM');
    throw new Error(`sshd did not start listening on ${opts.listen.join(', ')}:\n${log}`);
  }
  return {
    port,
    clientKey: join(dir, 'client_key'),
    clientOptions: ['-i', join(dir, 'client_key'), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20'],
    log: () => log,
    stop: () => sshd.kill('SIGTERM'),
  };
}
