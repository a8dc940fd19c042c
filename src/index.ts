/**
 * herdless: one native acceptor, many Node workers.
 *
 *   const { Dispatcher } = require('herdless');
 *   const d = await Dispatcher.start({ min: 2, max: 8, app: require.resolve('./app'), listen: { port: 8080 } });
 */
export { Dispatcher } from './dispatcher';
export type {
  DispatcherStats,
  WorkerStats,
  ListenerStats,
  DispatchWaitStats,
  DispatcherEvents,
  UpgradeOptions,
} from './dispatcher';
export type { DispatcherOptions, ListenOption, TcpListen, UnixListen, FdListen, Mode, Route } from './options';
export type { ProxyStats } from './binding';
export type { WorkerExit, ExitReason } from './worker-handle';
export type { ScaleEvent } from './supervisor';
export type { ScaleConfig } from './scaling';
export { HerdlessError, ErrorCodes } from './errors';
export type { HerdlessErrorCode } from './errors';
