// `ubia agent --daemon`: starts the agent detached from the terminal, its log lines
// appended to a file (log.daemon_file), and returns once its control socket answers
// (or reports why it did not start).
import { spawn } from 'node:child_process';
import { closeSync, constants, fchmodSync, openSync, readFileSync } from 'node:fs';
import { agentAnswers } from '../control/client.js';

const START_TIMEOUT_MS = 20_000;

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Spawns `node <cli> agent <args>` detached; resolves with its pid once it serves `socket`.
 *  The log file's directory must have been checked (agent/paths.ts): the file itself is
 *  never followed if it is a symbolic link, and is made 0600 (it names every user). */
export async function startDaemon(agentArgs: string[], socket: string, logFile: string): Promise<number> {
  const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW } = constants;
  let fd: number;
  try {
    fd = openSync(logFile, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ELOOP') throw e;
    throw new Error(`refusing log.daemon_file ${logFile}: it is a symbolic link; remove it (the agent creates the file)`);
  }
  fchmodSync(fd, 0o600);
  // with this process's node flags (bin/ubia's heap sizing)
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'agent', ...agentArgs], {
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    if (exited !== undefined) {
      throw new Error(`the agent exited (code ${exited}) while starting; last lines of ${logFile}:\n${tail(logFile, 15)}`);
    }
    if (await agentAnswers(socket)) return child.pid!;
  }
  throw new Error(`the agent (pid ${child.pid}) did not answer on ${socket} within ${START_TIMEOUT_MS / 1000} s; see ${logFile}`);
}
