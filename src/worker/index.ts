/**
 * `herdless/worker`: for app modules that want more control than a default export.
 *
 *   import { serve, ready, workerId } from 'herdless/worker';
 *   serve(https.createServer(opts, handler));  // instead of exporting it
 *   ready(db.connect());                        // no connections until this resolves
 *   onShutdown(() => db.end());                 // when this worker stops taking connections
 */
import type { Server } from 'node:net';
import type { ShutdownReason } from '../shared/protocol';
import { addShutdownHook, type ShutdownHook } from './shutdown-hooks';
import { state } from './state';

export type { ShutdownReason, ShutdownHook };

/** Use this (not yet listening) server for the connections this worker receives. */
export function serve<S extends Server>(server: S): S {
  if (state.id < 0) throw new Error('herdless/worker: serve() only works inside a herdless worker process');
  state.served = server;
  return server;
}

/** Hold back connections until `promise` resolves (a rejection fails the worker's start). */
export function ready(promise: Promise<unknown>): void {
  state.readiness.push(Promise.resolve(promise));
}

/** This worker's id, or -1 when not running under herdless. */
export function workerId(): number {
  return state.id;
}

/** This worker's slot 0..max-1: stable across replacements, unlike workerId(). */
export function workerSlot(): number {
  return state.slot;
}

export const isWorker = (): boolean => state.id >= 0;

/**
 * Run `fn(reason)` once when this worker stops taking connections, whatever the reason
 * (reload, scale-down, recycle, the app's server.close(), SIGTERM, the primary gone,
 * dispatcher close()). It may return a promise: the worker exits once every hook has
 * settled and its connections are closed, or at the shutdown deadline. A hook that throws
 * is reported on stderr. Registered after shutdown began, it runs at once. Outside a
 * herdless worker it is kept and never called.
 */
export function onShutdown(fn: ShutdownHook): void {
  if (typeof fn !== 'function') throw new TypeError(`herdless/worker: onShutdown() expects a function, got ${typeof fn}`);
  addShutdownHook(fn);
}
