// `ubia agent --daemon`: starts the agent detached from the terminal, its log lines
// appended to a file (log.daemon_file), and returns once its control socket answers
// (or reports why it did not start).
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { agentAnswers } from '../control/client.js';

const START_TIMEOUT_MS = 20_000;

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Spawns `node <cli> agent <args>` detached; resolves with its pid once it serves `socket`. */
export async function startDaemon(agentArgs: string[], socket: string, logFile: string): Promise<number> {
  mkdirSync(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'a');
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
