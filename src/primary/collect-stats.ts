/**
 * Dispatcher.stats(): the figures read now from the accept thread, the kernel's listen
 * queues and each worker's scoreboard page, assembled. Reading them sends nothing to the
 * workers, so polling stats() wakes no worker.
 */
import type { Addon, NativeAcceptor, ProxyStats } from '../shared/binding';
import { readCount, readLoop, readScore, WAIT_BUCKETS_SECONDS, type WaitCounts } from '../shared/scoreboard';
import type { AppListeners } from './app-listeners';
import type { HealthBook } from './health';
import { describeListener, type Listener } from './listeners';
import type { NormalizedOptions } from './options';
import type { Pool } from './pool';
import type { DispatchWaitStats, DispatcherStats, ListenerStats, WorkerStats } from './stats';

/** What stats() reads from: the dispatcher's parts. */
export interface StatsSources {
  addon: Addon;
  opts: NormalizedOptions;
  acceptor: NativeAcceptor | undefined;
  pool: Pool;
  health: HealthBook;
  sockets: Listener[];
  appListeners: AppListeners | undefined;
  /** close() was called: the listeners' fds are closed. */
  closing: boolean;
}

export function collectStats(from: StatsSources): DispatcherStats {
  const { addon, acceptor, pool } = from;
  const clock = addon.monotonicMillis();
  const acceptorStats = acceptor?.stats();
  const pending = acceptorStats?.pendingByWorker ?? {};
  // Health figures as of the last ask (a scrape, a control status, refreshHealth()).
  const workers: WorkerStats[] = [...pool.workers.values()].map((w) => {
    const loop = readLoop(w.board, clock);
    const health = from.health.get(w);
    return {
      id: w.id,
      slot: w.slot,
      restarts: pool.restarts(w.slot),
      startedAt: w.startedAt,
      pid: w.pid,
      state: w.state,
      connectionsReceived: readScore(w.board, 'received'),
      connectionsOpen: readCount(w.board, 'open'),
      connectionsWaiting: pending[String(w.id)] ?? 0,
      requestsInFlight: readCount(w.board, 'inFlight'),
      requestsServed: readScore(w.board, 'requests'),
      rejectedFds: readScore(w.board, 'rejected'),
      fdRoomStalls: readScore(w.board, 'fdRoomStalls'),
      acceptWakeups: readScore(w.board, 'wakeups'),
      emptyWakeups: readScore(w.board, 'emptyWakeups'),
      loopAwake: loop.awake,
      loopBusyMs: loop.awake ? loop.forMs : 0,
      loopWakeups: loop.wakeups,
      ...(health ? { health } : {}),
    };
  });
  let dispatcher: DispatcherStats['dispatcher'];
  let proxy: ProxyStats = { accepted: 0, local: 0, untrusted: 0, malformed: 0, timedOut: 0, fullPauses: 0, waiting: 0 };
  if (acceptorStats) {
    const { pendingByWorker: _unused, proxy: proxyStats, ...rest } = acceptorStats;
    dispatcher = rest;
    proxy = proxyStats;
  } else {
    // Herd modes: the workers accept; their counts are the only ones there are.
    const accepted = workers.reduce((sum, w) => sum + w.connectionsReceived, 0);
    dispatcher = {
      accepted,
      handedOff: 0,
      handoffRetries: 0,
      redispatched: 0,
      stolen: 0,
      steals: 0,
      acceptErrors: {},
      backpressurePauses: 0,
      backpressurePausedMs: 0,
      fdPauses: 0,
      fdPausedMs: 0,
      shortSlice: false,
      dropped: 0,
      waiting: 0,
    };
  }
  return {
    mode: from.opts.mode,
    listeners: listenerStats(from),
    dispatchWait: waitStats(pool.dispatchWait(), pool.refusedWaitPages),
    dispatcher,
    ipc: { ...pool.ipc },
    proxy,
    workers,
  };
}

/** Each listener's accept queue: one getsockopt (or netlink query, unix) each, now. */
function listenerStats(from: StatsSources): ListenerStats[] {
  // The accept thread's index of each: the configured ones first, then those the app opened.
  const all = [
    ...from.sockets.map((listener, index) => ({ index, listener })),
    ...(from.closing ? [] : (from.appListeners?.list() ?? [])),
  ];
  return all.map(({ index, listener: l }) => {
    // Closed by close(): the fd number may belong to something else by now.
    const q = from.closing ? null : from.addon.listenQueue(l.fd);
    return {
      address: describeListener(l),
      protocol: from.pool.protocols.get(index) ?? null,
      queued: q?.queued ?? null,
      backlog: q?.backlog ?? l.backlog ?? null,
    };
  });
}

function waitStats(w: WaitCounts, refusedPages: number): DispatchWaitStats {
  let cumulative = 0;
  const buckets = w.buckets.map((n, i) => {
    cumulative += n;
    return { le: i < WAIT_BUCKETS_SECONDS.length ? WAIT_BUCKETS_SECONDS[i] : Infinity, count: cumulative };
  });
  return { count: cumulative, sumSeconds: w.sumUs / 1e6, buckets, refusedPages };
}
