/**
 * What a worker process knows about itself, shared by the bootstrap (main.ts) and the
 * public API (index.ts) without either importing the other's side effects.
 */
import type { Server } from 'node:net';

export const state = {
  /** This worker's id (unique for the primary's life), or -1 outside a herdless worker. */
  id: -1,
  /** Its slot 0..max-1, reused by its replacement; -1 outside a herdless worker. */
  slot: -1,
  /** A server handed to serve() while the app module loaded. */
  served: undefined as Server | undefined,
  /** listen() calls the app made on any net.Server (herdless routes them to the primary). */
  listenCalls: 0,
  /** Promises the dispatcher waits for before sending connections. */
  readiness: [] as Promise<unknown>[],
};
