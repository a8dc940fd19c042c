/**
 * Which option names exist (Dispatcher.start(), a `listen` entry, `metrics`), and the error
 * for one that does not: a typo names the closest declared name instead of leaving an option
 * at its default.
 */
import { HerdlessError } from '../shared/errors';
import { closest } from '../shared/suggest';
import type { DispatcherOptions, FdListen, TcpListen, UnixListen } from './options';

/**
 * Every name Dispatcher.start() (and a --config file) accepts: any other is rejected as
 * unknown, with the closest of these suggested. A new option is declared in
 * DispatcherOptions (options.ts) and gets its entry here (the compiler insists on both).
 */
export const OPTION_NAMES: Record<keyof DispatcherOptions, true> = {
  app: true,
  listen: true,
  min: true,
  max: true,
  mode: true,
  backlog: true,
  maxConnectionsPerWorker: true,
  startTimeout: true,
  env: true,
  execArgv: true,
  args: true,
  scale: true,
  maxRequestsPerWorker: true,
  maxMemory: true,
  stallTimeout: true,
  stealAfter: true,
  metrics: true,
  headersTimeout: true,
  requestTimeout: true,
  keepAliveTimeout: true,
  user: true,
  group: true,
  upgradeTimeout: true,
  control: true,
  route: true,
  proxyProtocol: true,
  proxyTimeout: true,
  proxyFrom: true,
  health: true,
  workerOutput: true,
};

/** The names a `listen` entry may hold (TCP, Unix socket or inherited fd); same rule. */
export const LISTEN_OPTION_NAMES: Record<keyof TcpListen | keyof UnixListen | keyof FdListen, true> = {
  port: true,
  host: true,
  backlog: true,
  path: true,
  mode: true,
  fd: true,
};

export const METRICS_OPTION_NAMES = ['port', 'host', 'perWorker'];

/**
 * Throws ERR_HERDLESS_INVALID_OPTION for the first key of `given` not in `known`, naming it
 * and the closest known name: a typo must not silently leave an option at its default.
 */
export function rejectUnknownOptions(given: object, known: readonly string[], prefix = '', where = ''): void {
  for (const key of Object.keys(given)) {
    if (known.includes(key)) continue;
    const near = closest(key, known);
    const hint = near === undefined ? `known options: ${known.join(', ')}` : `did you mean ${prefix}${near}?`;
    throw new HerdlessError('ERR_HERDLESS_INVALID_OPTION', `Unknown option "${prefix}${key}"${where}: ${hint}`, {
      option: `${prefix}${key}`,
      suggestion: near === undefined ? undefined : `${prefix}${near}`,
    });
  }
}
