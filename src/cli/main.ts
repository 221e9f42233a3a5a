// The `ubia` command line. Exit codes: 0 done, 1 bad usage or error, 2 agent not running.
import { InvalidArgumentError } from 'commander';
import { AgentNotRunningError, AgentReplyError } from '../control/client.js';
import { buildProgram } from './program.js';

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof AgentNotRunningError) {
      process.stderr.write(
        `ubia: ${e.message}.\nStart it with: systemctl start ubia   (or, as root: ubia agent --daemon)\n`,
      );
      process.exitCode = 2;
    } else if (e instanceof AgentReplyError) {
      // these say what happened in words meant for the user; the rest are the agent's own
      const plain = e.code === 'forbidden' || e.code === 'no_such_user';
      process.stderr.write(plain ? `ubia: ${e.message}\n` : `ubia: the agent refused the request (${e.code}): ${e.message}\n`);
      process.exitCode = 1;
    } else if (e instanceof InvalidArgumentError) {
      process.stderr.write(`ubia: ${e.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`ubia: ${(e as Error).message}\n`);
      process.exitCode = 1;
    }
  }
}

await main();
