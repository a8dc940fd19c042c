/**
 * What the control socket's commands do. The CLI supplies its own (the same code paths as its
 * signals, so a `herdless stop` ends the process as SIGTERM does); an API user's Dispatcher
 * with the `control` option gets these defaults, which call the Dispatcher's methods.
 */
import type { Dispatcher } from '../dispatcher';
import type { WorkerExit } from '../worker-handle';

export interface ScaleResult {
  from: number;
  /** What was asked (N, or the current target plus/minus k). */
  asked: number;
  /** The pool's size now: `asked` clamped to [min, max]. */
  to: number;
}

export interface ReloadResult {
  replaced: number;
  failed: number;
  seconds: number;
  size: number;
  error?: { code?: string; message: string };
}

export interface UpgradeResult {
  from: number;
  pid: number;
  seconds: number;
}

export interface ControlActions {
  /** `delta` is relative to the size the pool is heading for (a resize under way included). */
  scale(to: number | { delta: number }): Promise<ScaleResult>;
  reload(): Promise<ReloadResult>;
  /** Resolves once the new primary serves (this one then drains). */
  upgrade(): Promise<UpgradeResult>;
  /** Begins a graceful stop; `stopping` is called once listeners are closed. Resolves when stopped. */
  stop(timeoutMs: number | undefined, stopping: () => void): Promise<{ seconds: number }>;
}

/**
 * Counts what a reload did: workers started and workers that failed to start or crashed while
 * it ran. `run` is the reload itself (Dispatcher#reload, or the CLI's SIGHUP path).
 */
export async function reloadWithSummary(d: Dispatcher, run: () => Promise<void>): Promise<ReloadResult> {
  const began = Date.now();
  let replaced = 0;
  let failed = 0;
  const onStart = () => replaced++;
  const onExit = (e: WorkerExit) => {
    if (e.reason === 'crashed' || e.reason === 'start-failed' || e.reason === 'stalled') failed++;
  };
  d.on('worker-start', onStart);
  d.on('worker-exit', onExit);
  let error: ReloadResult['error'];
  try {
    await run();
  } catch (err) {
    error = { code: (err as { code?: string }).code, message: (err as Error).message };
  } finally {
    d.off('worker-start', onStart);
    d.off('worker-exit', onExit);
  }
  return { replaced, failed, seconds: (Date.now() - began) / 1000, size: d.size, ...(error ? { error } : {}) };
}

/** Resolves when `d` emits 'upgraded' or `run` settles, whichever is first. */
export function upgradeWhenServing(d: Dispatcher, run: () => Promise<unknown>): Promise<UpgradeResult> {
  const began = Date.now();
  return new Promise((resolve, reject) => {
    const onUpgraded = ({ pid }: { pid: number }) => resolve({ from: process.pid, pid, seconds: (Date.now() - began) / 1000 });
    d.once('upgraded', onUpgraded);
    run().then(
      (r) => {
        d.off('upgraded', onUpgraded);
        const pid = (r as { pid?: number } | undefined)?.pid ?? 0;
        resolve({ from: process.pid, pid, seconds: (Date.now() - began) / 1000 });
      },
      (err) => {
        d.off('upgraded', onUpgraded);
        reject(err);
      },
    );
  });
}

export function defaultActions(d: Dispatcher): ControlActions {
  let wanted: number | undefined;
  return {
    async scale(spec) {
      const from = d.size;
      const asked = typeof spec === 'number' ? spec : (wanted ?? d.size) + spec.delta;
      wanted = asked;
      try {
        return { from, asked, to: await d.resize(asked) };
      } finally {
        if (wanted === asked) wanted = undefined;
      }
    },
    reload: () => reloadWithSummary(d, () => d.reload()),
    upgrade: () => upgradeWhenServing(d, () => d.upgrade()),
    async stop(timeoutMs, stopping) {
      const began = Date.now();
      const closed = d.close(timeoutMs === undefined ? {} : { timeout: timeoutMs });
      stopping();
      await closed;
      return { seconds: (Date.now() - began) / 1000 };
    },
  };
}
