// What the agent shows of itself to the control socket (AgentState, declared in
// agent.ts): its parts, its configuration as in force now, the configured access policy
// and the NSS look-ups the roles need. The control layer decides each caller's view.
import { dirname, join } from 'node:path';
import type { UbiaConfig } from '../config/config.js';
import { createPseudonyms, type Pseudonyms } from '../privacy/pseudonyms.js';
import { readOrCreateSecret } from '../privacy/secret.js';
import type { AgentDeps, AgentState } from './agent.js';
import type { ExporterSet } from './exporter-set.js';
import type { PollLoop } from './poll-loop.js';

/** The agent's parts the state shows as they are (AgentState's own fields), and what it
 *  derives the rest from. */
export interface ControlStateParts extends Pick<AgentState, 'accounting' | 'ledger' | 'history' | 'meter' | 'names' | 'quotas' | 'configFile'> {
  exporters: ExporterSet;
  loop: PollLoop;
  /** the configuration in force (a reload replaces it) */
  config(): UbiaConfig;
  startedAt: number;
}

export function createControlState(parts: ControlStateParts, deps: Pick<AgentDeps, 'userByName' | 'primaryGroup' | 'groupMembers'>): AgentState {
  const { accounting, ledger, history, meter, names, quotas, exporters, loop, configFile, config, startedAt } = parts;
  const directory: AgentState['directory'] = {
    name: (uid) => names.name(uid),
    userByName: deps.userByName,
    primaryGroup: deps.primaryGroup,
    group: deps.groupMembers,
  };
  // the auditor's secret is read (or created) when an auditor first asks, and again when
  // a reload names another file
  let auditor: { file: string; pseudonyms: Pseudonyms } | undefined;
  const pseudonyms = () => {
    const file = config().control.auditor_key_file || join(dirname(config().ledger.path), 'auditor.key');
    if (auditor?.file !== file) auditor = { file, pseudonyms: createPseudonyms(readOrCreateSecret(file)) };
    return auditor.pseudonyms;
  };
  return {
    accounting,
    ledger,
    history,
    meter,
    names,
    quotas,
    configFile,
    pollIntervalSeconds: () => config().agent.poll_interval,
    countLoopback: () => config().agent.count_loopback,
    exporters: () => exporters.list().map((e) => e.status()),
    access: () => ({ adminGroup: config().control.admin_group, roles: config().control.roles ?? [], pseudonyms }),
    directory,
    times: () => ({ startedAt, ...loop.times() }),
    lastFlushError: () => loop.lastFlushError(),
  };
}
