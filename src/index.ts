/**
 * herdless: one native acceptor, many Node workers.
 *
 *   const { Dispatcher } = require('herdless');
 *   const d = await Dispatcher.start({ min: 2, max: 8, app: require.resolve('./app'), listen: { port: 8080 } });
 */
export { Dispatcher } from './primary/dispatcher';
export type {
  DispatcherStats,
  WorkerStats,
  ListenerStats,
  DispatchWaitStats,
  DispatcherEvents,
  UpgradeOptions,
} from './primary/dispatcher';
export type { DispatcherOptions, ListenOption, TcpListen, UnixListen, FdListen, Mode, Route } from './primary/options';
export type { ProxyStats } from './shared/binding';
export type { WorkerExit, ExitReason } from './primary/worker-handle';
export type { ScaleEvent } from './primary/supervisor';
export type { ScaleConfig } from './primary/scaling';
export { HerdlessError, ErrorCodes } from './shared/errors';
export type { HerdlessErrorCode } from './shared/errors';
