/**
 * The dispatch-wait histogram summed over every worker there has been. Each worker writes its
 * own on its scoreboard page; a page that could not be true (written with nonsense) is refused
 * and that worker's last plausible figures count instead, so one page never corrupts totals.
 */
import { addWaitCounts, emptyWait, readWait, waitFollows, type WaitCounts } from '../shared/scoreboard';
import type { WorkerHandle } from './worker-handle';

export class DispatchWait {
  /** Counts of workers that have exited: a histogram's counts never go down. */
  private readonly retired = emptyWait();
  /** Each worker's last histogram that could be true (see readWait): what counts for it. */
  private readonly last = new Map<number, WaitCounts>();
  /** Workers whose page was refused as implausible, at least once. */
  private readonly refused = new Set<number>();
  refusedPages = 0;

  /** Every worker's counts: `workers` (those alive) and those gone. */
  total(workers: Iterable<WorkerHandle>): WaitCounts {
    const sum: WaitCounts = { buckets: [...this.retired.buckets], sumUs: this.retired.sumUs };
    for (const w of workers) addWaitCounts(sum, this.of(w));
    return sum;
  }

  /** `w` has exited: its page is final now (the process is gone), and kept from here on. */
  retire(w: WorkerHandle): void {
    addWaitCounts(this.retired, this.of(w));
    this.last.delete(w.id);
    this.refused.delete(w.id);
  }

  /**
   * `w`'s histogram as far as it can be believed: its page while that is plausible and has
   * only grown, else what it last showed that was.
   */
  private of(w: WorkerHandle): WaitCounts {
    // No wait is longer than this primary has been up (plus a second for clock rounding).
    const now = readWait(w.board, (process.uptime() + 1) * 1e6);
    const last = this.last.get(w.id);
    if (now && (!last || waitFollows(last, now))) {
      this.last.set(w.id, now);
      return now;
    }
    if (!this.refused.has(w.id)) {
      this.refused.add(w.id);
      this.refusedPages++;
    }
    return last ?? emptyWait();
  }
}
