/**
 * The pool's start-again policy: how long to wait before the next start after quick crashes
 * or failed spawns in a row (exponential back-off), and when to stop starting altogether
 * (a crash loop). The pool asks; it decides nothing here about how many workers to run.
 */
import { HerdlessError } from '../shared/errors';
import type { WorkerHandle } from './worker-handle';

const RESPAWN_BASE_MS = 100;
const RESPAWN_MAX_MS = 10_000;
/** A worker that dies sooner than this after start counts towards a crash loop. */
const QUICK_CRASH_MS = 10_000;
const CRASH_LOOP_COUNT = 5;
/** Back-off cap when processes cannot be created at all (fds or pids exhausted). */
const SPAWN_RETRY_MAX_MS = 5_000;

export class CrashLoop {
  private quickCrashes = 0;
  /** spawn() failures in a row (EMFILE, EAGAIN...): back-off, but never a crash-loop halt once started. */
  private spawnFailures = 0;
  private halt: HerdlessError | undefined;
  /** Back-off sleeps under way: wakeAll() cuts them short. */
  private readonly sleepers = new Set<() => void>();
  private woken = false;

  /** Set once workers crash-loop: nothing starts until reset() (a reload). */
  get halted(): HerdlessError | undefined {
    return this.halt;
  }

  /** A reload: whatever looped before gets a fresh count. */
  reset(): void {
    this.halt = undefined;
    this.quickCrashes = 0;
  }

  backoff(): number {
    const crashes = this.quickCrashes === 0 ? 0 : Math.min(RESPAWN_BASE_MS * 2 ** (this.quickCrashes - 1), RESPAWN_MAX_MS);
    const spawns = this.spawnFailures === 0 ? 0 : Math.min(RESPAWN_BASE_MS * 2 ** (this.spawnFailures - 1), SPAWN_RETRY_MAX_MS);
    return Math.max(crashes, spawns);
  }

  /** A back-off wait that wakeAll() ends at once (no timer outlives the pool). */
  sleep(ms: number): Promise<void> {
    if (this.woken) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  /** The pool closes: every back-off ends now, and later ones do not wait. */
  wakeAll(): void {
    this.woken = true;
    for (const wake of [...this.sleepers]) wake();
  }

  /** `w` is ready: processes can be created again. */
  noteReady(w: WorkerHandle): void {
    this.spawnFailures = 0;
    // A worker that lives QUICK_CRASH_MS breaks a row of quick crashes: without this,
    // five SIGKILLs (OOM, an operator) of young workers over weeks would halt the pool.
    const proven = setTimeout(() => {
      if (w.state === 'ready') this.quickCrashes = 0;
    }, QUICK_CRASH_MS);
    proven.unref();
    void w.exited.then(() => clearTimeout(proven));
  }

  /** `w` crashed after `livedMs`; returns the crash-loop error if this one halts the pool. */
  noteCrash(livedMs: number, w: WorkerHandle): HerdlessError | undefined {
    this.quickCrashes = livedMs >= QUICK_CRASH_MS ? 0 : this.quickCrashes + 1;
    if (this.quickCrashes < CRASH_LOOP_COUNT || this.halt) return undefined;
    const tail = w.stderr ? `\nLast stderr lines of worker ${w.id}:\n${w.stderr}` : '';
    this.halt = new HerdlessError(
      'ERR_HERDLESS_CRASH_LOOP',
      `${CRASH_LOOP_COUNT} workers in a row died within ${QUICK_CRASH_MS / 1000} s of starting; ` +
        `herdless stopped starting new ones. Fix the app, then reload() or restart.${tail}`,
      { stderr: w.stderr },
    );
    return this.halt;
  }

  /**
   * The primary could not create a process (out of fds or pids): not the app's fault, so
   * once serving (`started`) the pool keeps retrying with back-off and recovers when the
   * resource is back. Only a first start gives up (after CRASH_LOOP_COUNT tries): there is
   * nothing to keep serving.
   */
  noteSpawnFailure(err: Error, started: boolean): void {
    this.spawnFailures++;
    if (started || this.halt || this.spawnFailures < CRASH_LOOP_COUNT) return;
    this.halt = new HerdlessError(
      'ERR_HERDLESS_WORKER_START',
      `could not start workers: ${err.message} (${this.spawnFailures} tries). Raise the fd or process limit, then start again.`,
      { cause: err },
    );
  }
}
