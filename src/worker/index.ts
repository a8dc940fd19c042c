/**
 * `herdless/worker`: for app modules that want more control than a default export.
 *
 *   import { serve, ready, workerId } from 'herdless/worker';
 *   serve(https.createServer(opts, handler));  // instead of exporting it
 *   ready(db.connect());                        // no connections until this resolves
 */
import type { Server } from 'node:net';
import { state } from './state';

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

export const isWorker = (): boolean => state.id >= 0;
