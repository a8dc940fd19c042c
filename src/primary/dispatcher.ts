/**
 * Dispatcher: the public face of the primary process. It opens the listeners, starts the
 * accept thread (mode 'dispatch') and the worker pool, and answers for both.
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { MetricsServer } from './metrics';
import type { ControlServer } from './control/server';
import { loadAddon, type Addon, type NativeAcceptor } from '../shared/binding';
import { HerdlessError, invalidOption } from '../shared/errors';
import { answerUpgradeOnStart, listenKey, metricsKey, upgradedFrom, type InheritedSocket } from './inherited';
import { closeListeners, openListeners, type Listener } from './listeners';
import type { AppListeners } from './app-listeners';
import { normalizeOptions, type DispatcherOptions, type NormalizedOptions } from './options';
import { ASK_TIMEOUT_MS, HealthBook, type WorkerReply } from './health';
import { Pool } from './pool';
import { Supervisor, type ScaleEvent } from './supervisor';
import { startSuccessor, type Successor } from './upgrade';
import { ROUTE_SECRET_ENV, takeRouteSecret } from './route-secret';
import type { WorkerExit } from './worker-handle';
import { createAcceptor } from './accept-thread';
import { collectStats } from './collect-stats';

const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

import type { WorkerStats, ListenerStats, DispatchWaitStats, DispatcherStats } from './stats';
export type { WorkerStats, ListenerStats, DispatchWaitStats, DispatcherStats };

export interface DispatcherEvents {
  'worker-start': [{ id: number; slot: number; pid: number }];
  /** process.send(message) from the app in a worker (herdless's own messages excluded), as cluster's 'message'. */
  message: [{ id: number; slot: number; pid: number }, unknown];
  'worker-exit': [WorkerExit];
  scale: [ScaleEvent];
  /** The new primary of upgrade() is ready and serving; this one drains and closes. */
  upgraded: [{ pid: number }];
  /** ERR_HERDLESS_UPGRADE: the new primary failed; this one keeps serving. */
  'upgrade-failed': [Error];
  error: [Error];
}

export interface UpgradeOptions {
  /** Environment for the new primary on top of this process's (e.g. what the CLI removed from it). */
  env?: Record<string, string | undefined>;
  /** More sockets to hand over (the CLI's metrics server), by the key the new primary asks for. */
  sockets?: InheritedSocket[];
  /** How long the old workers may drain once the new primary serves, ms (default 30000). */
  closeTimeout?: number;
}

/** The scoreboard is memory shared with each worker, seen through an external ArrayBuffer. */
function assertRuntime(addon: Addon): void {
  if (addon.externalBuffersAllowed()) return;
  throw new HerdlessError(
    'ERR_HERDLESS_UNSUPPORTED_PLATFORM',
    'this Node.js runtime refuses external ArrayBuffers (a V8 sandbox build, as in Electron): herdless shares ' +
      "each worker's load figures through a shared-memory page exposed that way. Run it on a Node.js build without the V8 sandbox.",
  );
}

export class Dispatcher extends EventEmitter<DispatcherEvents> {
  private closing: Promise<void> | undefined;
  private successor: Successor | undefined;
  /** Set once a new primary serves our sockets: close() must not remove their files. */
  private handedOver = false;
  private metrics: MetricsServer | undefined;
  private control: ControlServer | undefined;
  private readonly supervisor: Supervisor;
  private readonly health = new HealthBook();

  private constructor(
    private readonly addon: Addon,
    private readonly opts: NormalizedOptions,
    private readonly sockets: Listener[],
    private readonly acceptor: NativeAcceptor | undefined,
    private readonly pool: Pool,
    private readonly appListeners: AppListeners | undefined,
    private readonly routeSecret: Buffer,
  ) {
    super();
    pool.on('worker-start', (info) => this.emit('worker-start', info));
    pool.on('message', (worker, message) => this.emit('message', worker, message));
    pool.on('worker-exit', (exit) => this.emit('worker-exit', exit));
    pool.on('error', (err) => this.report(err));
    this.supervisor = new Supervisor(addon, opts, pool, acceptor, (e) => this.emit('scale', e), (err) => this.report(err));
    this.supervisor.start();
  }

  /** Bind every listener and start `min` workers; resolves when they are ready to serve. */
  static async start(options: DispatcherOptions): Promise<Dispatcher> {
    try {
      const d = await Dispatcher.open(options);
      // On the next turn, so that whoever awaited start() runs first (the CLI answers itself).
      setImmediate(() => answerUpgradeOnStart(d.addon, { ready: true }));
      return d;
    } catch (err) {
      // A new primary of an upgrade that cannot start says why (without an addon, no upgrade).
      try {
        answerUpgradeOnStart(loadAddon(), { ready: false, error: err });
      } catch {
        // not Linux: nothing was inherited
      }
      throw err;
    }
  }

  private static async open(options: DispatcherOptions): Promise<Dispatcher> {
    const opts = normalizeOptions(options);
    // Taken (and removed from the environment) before any worker is spawned.
    const routeSecret = takeRouteSecret();
    const addon = loadAddon();
    assertRuntime(addon);
    const listeners = await openListeners(addon, opts.listen, opts.mode);
    let acceptor: NativeAcceptor | undefined;
    let pool: Pool | undefined;
    let appListeners: AppListeners | undefined;
    try {
      if (opts.mode === 'dispatch') {
        // The accept thread reports to the dispatcher, which emits 'error'.
        let self: Dispatcher | undefined;
        ({ acceptor, app: appListeners } = createAcceptor(addon, opts, listeners, routeSecret, (err) => self?.report(err)));
        pool = new Pool(addon, opts, listeners, acceptor, appListeners);
        await pool.start();
        appListeners.closeUnclaimed();
        self = new Dispatcher(addon, opts, listeners, acceptor, pool, appListeners, routeSecret);
        acceptor.start();
        return await (await self.startMetrics()).startControl();
      }
      pool = new Pool(addon, opts, listeners, undefined);
      await pool.start();
      return await (await new Dispatcher(addon, opts, listeners, undefined, pool, undefined, routeSecret).startMetrics()).startControl();
    } catch (err) {
      // Nothing may outlive a failed start.
      await pool?.destroy();
      acceptor?.stop();
      appListeners?.closeAll(true);
      // A failed upgrade: the socket files are still the old primary's.
      closeListeners(addon, listeners, upgradedFrom(addon) === undefined);
      throw err;
    }
  }

  /**
   * A fault the primary survives: 'error' for whoever listens, else a process warning on
   * stderr. Never an unhandled 'error' event: that would take every worker down with it.
   */
  private report(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(err);
  }

  /** The metrics server comes last: if its port is taken, the whole start fails cleanly. */
  private async startMetrics(): Promise<this> {
    if (!this.opts.metrics) return this;
    try {
      // Loaded only when asked for: prom-client is not needed otherwise.
      const { startMetricsServer } = await import('./metrics.js');
      this.metrics = await startMetricsServer(this, { ...this.opts.metrics, ready: () => !this.closing && this.size >= 1 });
      return this;
    } catch (err) {
      await this.close({ timeout: 1000 });
      throw err;
    }
  }

  /** The `control` option's socket comes after the metrics server, for the same reason. */
  private async startControl(): Promise<this> {
    if (this.opts.control === undefined) return this;
    try {
      const { ControlServer } = await import('./control/server.js');
      const { defaultActions } = await import('./control/actions.js');
      const { min, max, mode, app } = this.opts;
      this.control = await ControlServer.start(this.addon, this, {
        path: this.opts.control === true ? undefined : this.opts.control,
        info: { app, min, max, mode, version: require('../../package.json').version, startedAt: Date.now() },
        actions: defaultActions(this),
        takeOverFrom: upgradedFrom(this.addon),
      });
      return this;
    } catch (err) {
      await this.close({ timeout: 1000 });
      throw err;
    }
  }

  /** The control socket's path (`control` option), or null. */
  controlPath(): string | null {
    return this.control?.path ?? null;
  }

  /** Where the metrics server listens (`metrics` option), or null. */
  metricsAddress(): AddressInfo | null {
    return this.metrics?.address() ?? null;
  }

  /** Like net.Server#address() for the first listener (configured, else the first the app opened). */
  address(): AddressInfo | string | null {
    const info = (this.sockets[0] ?? this.appListeners?.list()[0]?.listener)?.info;
    if (!info) return null;
    if (info.family === 'unix') return info.path ?? null;
    return { address: info.address!, family: info.family, port: info.port! };
  }

  /** Workers taking connections now. */
  get size(): number {
    return this.pool.size;
  }

  workers(): { id: number; slot: number; pid: number; state: string }[] {
    return [...this.pool.workers.values()].map((w) => ({ id: w.id, slot: w.slot, pid: w.pid, state: w.state }));
  }

  /**
   * Ask each serving worker for its health now; resolves within `timeout` ms, after which
   * stats().workers[].health holds the answers (a worker that did not answer: its last
   * figures, stale: true). stats() also asks by itself, in the background, when its figures
   * are over a second old.
   */
  async refreshHealth(timeout = ASK_TIMEOUT_MS): Promise<void> {
    if (this.opts.health) await this.health.ask(this.pool.serving(), false, timeout);
  }

  /** For the metrics server: health, and the app's prom-client metrics if `metrics`, from every serving worker. */
  async askWorkers(options: { metrics: boolean; timeout?: number }): Promise<WorkerReply[]> {
    return this.health.ask(this.pool.serving(), options.metrics, options.timeout ?? ASK_TIMEOUT_MS);
  }

  stats(): DispatcherStats {
    const { addon, opts, acceptor, pool, health, sockets, appListeners } = this;
    return collectStats({ addon, opts, acceptor, pool, health, sockets, appListeners, closing: this.closing !== undefined });
  }

  /** Grow or shrink to `n` workers, clamped to [min, max]; resolves with the new size when done. */
  async resize(n: number): Promise<number> {
    if (typeof n !== 'number' || !Number.isFinite(n)) throw invalidOption('resize(n)', `expected a number, got ${String(n)}`);
    this.assertOpen();
    const from = this.pool.target;
    const to = await this.pool.resize(n);
    if (to !== from) this.emit('scale', { from, to, reason: 'resize()' });
    return to;
  }

  /**
   * Rolling restart: every worker is replaced by a fresh one, a few at a time, each new one
   * ready before an old one drains. Resolves when done. Also clears a crash-loop halt.
   */
  async reload(): Promise<void> {
    this.assertOpen();
    await this.pool.reload();
  }

  private assertOpen(): void {
    if (this.closing) throw new HerdlessError('ERR_HERDLESS_CLOSED', 'the dispatcher is closed or closing');
  }

  /**
   * Graceful stop: stop accepting (new connections are refused), let workers finish their
   * in-flight requests and close idle keep-alive connections, then exit. Workers still
   * running after `timeout` ms are killed. Resolves when every worker process is gone.
   */
  close(options: { timeout?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(options.timeout ?? DEFAULT_CLOSE_TIMEOUT_MS);
    return this.closing;
  }

  /**
   * Replace this primary with a new one started from the same command line, which loads
   * herdless and the app from disk again and adopts every listening socket (so the port never
   * closes). Once the new one's `min` workers are ready, this one stops accepting and drains
   * as close() does; resolves with the new primary's pid when that is done. If the new one
   * fails or is not ready within `upgradeTimeout`, rejects with ERR_HERDLESS_UPGRADE and this
   * one keeps serving. The new process runs the same script, which calls Dispatcher.start()
   * again: that adopts the sockets instead of binding.
   */
  async upgrade(options: UpgradeOptions = {}): Promise<{ pid: number }> {
    this.assertOpen();
    if (this.successor) {
      throw new HerdlessError('ERR_HERDLESS_UPGRADE_IN_PROGRESS', `an upgrade to pid ${this.successor.pid} is under way; wait for it to finish or fail`);
    }
    if (this.opts.mode === 'reuseport') {
      throw new HerdlessError(
        'ERR_HERDLESS_UPGRADE',
        "mode 'reuseport' cannot hand over its listeners: each worker owns its own, and the kernel resets the connections queued on one that closes. Use mode 'dispatch' (or 'herd'), or restart.",
      );
    }
    if (process.pid === 1) {
      throw new HerdlessError('ERR_HERDLESS_UPGRADE', 'this primary is PID 1 (a container): when it exits the container stops. Replace the container instead.');
    }
    const sockets: InheritedSocket[] = this.sockets.map((l, i) => ({ fd: l.fd, key: listenKey(this.opts.listen[i]) }));
    sockets.push(...(this.appListeners?.inheritable() ?? []));
    const metricsFd = this.metrics?.fd();
    if (metricsFd !== undefined && this.opts.metrics) sockets.push({ fd: metricsFd, key: metricsKey(this.opts.metrics) });
    sockets.push(...(options.sockets ?? []));
    const successor = startSuccessor(sockets, { env: { ...options.env, [ROUTE_SECRET_ENV]: this.routeSecret.toString('hex') }, timeout: this.opts.upgradeTimeout });
    this.successor = successor;
    try {
      await successor.ready;
    } catch (err) {
      this.successor = undefined;
      this.emit('upgrade-failed', err as Error);
      throw err;
    }
    this.handedOver = true;
    // The new primary has renamed its control socket over ours: clients reach it now.
    this.control?.close();
    // The new primary answers on the metrics socket now; a draining one would fail /healthz
    // checks that reach it (503) and pull the host out of its load balancer.
    await this.metrics?.close();
    this.emit('upgraded', { pid: successor.pid });
    await this.close({ timeout: options.closeTimeout });
    return { pid: successor.pid };
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    // Closed mid-upgrade: the new primary is not ready, so it must not stay behind.
    if (!this.handedOver) this.successor?.abort('was stopped: the old primary is closing');
    this.supervisor.stop();
    this.control?.close();
    this.acceptor?.stop();
    closeListeners(this.addon, this.sockets, !this.handedOver);
    this.appListeners?.closeAll(!this.handedOver);
    await this.pool.close(timeoutMs);
    await this.metrics?.close();
  }
}
