/**
 * Node's `cluster` module, as the app sees it in a herdless worker: a worker, not a primary.
 * Node decides isPrimary once, from NODE_UNIQUE_ID, when `cluster` is first required; a
 * herdless worker has no NODE_UNIQUE_ID (Node would then run its own worker bootstrap and
 * route listen() through a cluster primary we do not have), so it gets the primary's module
 * object, which we turn into a worker's before the app loads. The classic
 * `if (cluster.isPrimary) fork(); else app.listen()` then listens instead of forking a second
 * pool under every worker.
 *
 * cluster.worker.id is the stable slot + 1: Node numbers cluster workers from 1, so
 * "`cluster.worker.id === 1` runs the cron" holds in exactly one worker, the one in slot 0,
 * which is also where pm2-minded apps look (NODE_APP_INSTANCE === '0'). Unlike Node's ids,
 * a replacement keeps the id of the worker it replaces, so that cron survives a crash.
 *
 * net.Server.listen() asks `cluster.isPrimary` too: as a worker it calls cluster._getServer()
 * for the listening handle. Listen routing (app-listen.ts) answers listen() before net.js gets
 * there; what it leaves to Node (`{ fd }`, `{ handle }`: this process's own) binds here, as
 * in a primary.
 */
import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';

/** What net.js's listenInCluster() hands to cluster._getServer(). */
export interface ServerQuery {
  address: string | null;
  port: number;
  addressType: number;
  fd: number | undefined;
  flags: number;
  backlog: number;
  [key: string]: unknown;
}
type Listenable = { _listen2(address: unknown, port: unknown, addressType: unknown, backlog: unknown, fd: unknown, flags: unknown): void };
export type GetServer = (server: unknown, query: ServerQuery, cb: (err: number, handle: unknown) => void) => void;

/** A worker binding its own socket, as net.js does in a primary. */
const bindHere: GetServer = (server, q) => (server as Listenable)._listen2(q.address, q.port, q.addressType, q.backlog, q.fd, q.flags);

/** cluster.worker as Node's worker side defines it: an EventEmitter over this process. */
class ClusterWorker extends EventEmitter {
  state = 'online';
  exitedAfterDisconnect: boolean | undefined = undefined;
  constructor(
    readonly id: number,
    readonly process: NodeJS.Process,
  ) {
    super();
  }
  send(...args: unknown[]): boolean {
    return (process.send as ((...a: unknown[]) => boolean) | undefined)?.(...args) ?? false;
  }
  isConnected(): boolean {
    return process.connected;
  }
  isDead(): boolean {
    return false;
  }
  /** As in Node: stop taking connections and let the process end once nothing holds it. */
  disconnect(): this {
    this.exitedAfterDisconnect = true;
    this.state = 'disconnecting';
    onDisconnect();
    return this;
  }
  destroy(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.exitedAfterDisconnect = true;
    process.kill(process.pid, signal);
  }
  kill(signal?: NodeJS.Signals): void {
    this.destroy(signal);
  }
}

let onDisconnect: () => void = () => {};

/**
 * Makes `cluster` describe this process as worker `slot + 1`; `getServer` answers listen(),
 * `disconnect` is what cluster.worker.disconnect() does (the worker's graceful stop).
 */
export function becomeClusterWorker(slot: number, disconnect: () => void, getServer: GetServer = bindHere): void {
  onDisconnect = disconnect;
  const c = cluster as unknown as Record<string, unknown>;
  const worker = new ClusterWorker(slot + 1, process);
  c.isPrimary = false;
  c.isMaster = false;
  c.isWorker = true;
  c.worker = worker;
  c._getServer = getServer;
  // A worker's module has none of the primary's API: an app that forks anyway fails as it
  // would in a Node cluster worker, instead of starting processes behind our back.
  for (const name of ['fork', 'setupPrimary', 'setupMaster', 'disconnect']) delete c[name];
  c.workers = undefined;
  // As Node's cluster worker: every 'message' (ours arrive as 'internalMessage'). Like Node's,
  // this listener holds the IPC channel ref'd.
  process.on('message', (m: unknown, handle: unknown) => worker.emit('message', m, handle));
}
