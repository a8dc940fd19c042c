/**
 * What a worker answers when the primary asks for its health (a /metrics scrape, `status`,
 * `top`): nothing here runs on a timer, so an idle worker sleeps as it did without it.
 *
 * - event-loop delay: the awake span of each wake-up, recorded by the native loop-state
 *   hooks (native/worker/loop-state.cc) over the last 10-20 s. perf_hooks'
 *   monitorEventLoopDelay() is not used: it is a libuv timer (10 ms), which wakes an idle loop.
 * - ELU: performance.eventLoopUtilization() (libuv's own idle-time counter) over the same
 *   kind of window, so that no reader's figures depend on when another one asked.
 * - GC: a PerformanceObserver for 'gc' entries, which runs only after a collection.
 * - heap, RSS and handles: read when asked.
 * - the app's prom-client metrics: from the app's own copy of prom-client, and only if the
 *   app has loaded it (nothing is loaded for an app that does not use it).
 */
import * as path from 'node:path';
import { performance, PerformanceObserver, type EventLoopUtilization } from 'node:perf_hooks';
import type { Addon } from '../shared/binding';
import type { HealthReport, WorkerMessage } from '../shared/protocol';

let gcCount = 0;
let gcMs = 0;
let enabled = false;

const WINDOW_MS = 10_000;
/** Where the window under way and the one before it started: ELU is read over both. */
let eluWindow: { at: number; elu: EventLoopUtilization } | undefined;
let eluBefore: EventLoopUtilization | undefined;

function utilization(): number {
  const now = performance.eventLoopUtilization();
  const at = Date.now();
  if (!eluWindow) eluWindow = { at, elu: now };
  if (at - eluWindow.at >= WINDOW_MS) {
    eluBefore = eluWindow.elu;
    eluWindow = { at, elu: now };
  }
  const u = performance.eventLoopUtilization(now, eluBefore ?? eluWindow.elu).utilization;
  return Number.isFinite(u) ? u : 0;
}

export function startHealth(on: boolean): void {
  enabled = on;
  if (!on) return;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcCount++;
      gcMs += entry.duration;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  eluWindow = { at: Date.now(), elu: performance.eventLoopUtilization() };
}

function report(addon: Addon): HealthReport | null {
  if (!enabled) return null;
  const delay = addon.loopDelay() ?? { count: 0, p50: 0, p99: 0, max: 0 };
  const mem = process.memoryUsage();
  return {
    delayUs: { count: delay.count, p50: delay.p50, p99: delay.p99, max: delay.max },
    elu: utilization(),
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    rss: mem.rss,
    gcCount,
    gcMs,
    handles: process.getActiveResourcesInfo().length,
  };
}

interface PromClient {
  register: { getMetricsAsJSON(): Promise<unknown[]> | unknown[] };
}

/** Where `require('prom-client')` from the app's directory leads: null if it leads nowhere. */
let promPath: string | null | undefined;

/** The app's prom-client, if the app has loaded it (never loaded here: that would cost memory). */
function appPromClient(app: string): PromClient | undefined {
  if (promPath === undefined) {
    try {
      promPath = require.resolve('prom-client', { paths: [path.dirname(app)] });
    } catch {
      promPath = null;
    }
  }
  if (promPath === null) return undefined;
  const exports = require.cache[promPath]?.exports as PromClient | undefined;
  return typeof exports?.register?.getMetricsAsJSON === 'function' ? exports : undefined;
}

export async function answerAsk(addon: Addon, app: string, seq: number, metrics: boolean): Promise<WorkerMessage> {
  const answer: WorkerMessage = { herdless: 'health', seq, health: report(addon) };
  if (!metrics) return answer;
  const client = appPromClient(app);
  if (!client) return { ...answer, metrics: null };
  try {
    return { ...answer, metrics: await client.register.getMetricsAsJSON() };
  } catch (err) {
    // An app's collect() that throws costs its own metrics, not the scrape.
    return { ...answer, metrics: null, metricsError: (err as Error).message };
  }
}
