// The agent's logger: pino, one JSON line per event on stderr (journald and the
// --daemon log file both take it from there).
import { pino, type Logger } from 'pino';
import type { UbiaConfig } from './config/config.js';

/** log.level of the configuration (its schema holds the choices and the default) */
export type LogLevel = UbiaConfig['log']['level'];

export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
}
