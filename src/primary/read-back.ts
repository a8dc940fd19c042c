/**
 * Connections a leaving worker was sent but never read: it is taken out of dispatch, what
 * waits in its channel is read back from the primary's own copy of the worker's end, and the
 * accept thread gives it to other workers (counted as re-dispatched). Nothing sent to a
 * worker that exits, is retired or is killed is lost.
 */
import type { NativeAcceptor } from '../shared/binding';
import { fdHeadroom, type WorkerHandle } from './worker-handle';

/**
 * Connections read back from a worker's channel need an fd each in the primary: the kernel
 * closes those it cannot install (MSG_CTRUNC), which resets the client. So they are read
 * back only with this many fds to spare beyond those the worker may have unread, and
 * otherwise left in the channel (which holds them safely) and tried again shortly.
 */
const READBACK_SPARE_FDS = 16;
const READBACK_RETRY_MS = 100;
const READBACK_GIVE_UP_MS = 30_000;

export class ReadBack {
  /** Workers taken out of dispatch -> how many connections they had been sent and not read then. */
  private readonly unreadBound = new Map<number, number>();

  constructor(
    private readonly acceptor: NativeAcceptor | undefined,
    /** Never throws: a fault the primary survives. */
    private readonly report: (err: Error) => void,
  ) {}

  /** Take a worker out of dispatch, noting how many connections it may not have read. */
  detach(w: WorkerHandle): void {
    if (!this.acceptor || this.unreadBound.has(w.id)) return;
    const pending = this.acceptor.stats().pendingByWorker[String(w.id)] ?? 0;
    this.unreadBound.set(w.id, Math.min(Math.max(pending, 0), 1 << 16));
    this.acceptor.removeWorker(w.id);
  }

  /**
   * A worker that leaves stops reading its channel at once (and a stuck one never reads):
   * connections already sent to it but not yet read would wait for its exit. Read them back
   * now, from our own copy of its end, and give them to other workers. Call after
   * detach(), so that nothing more arrives. A record is read whole by one side only
   * (SEQPACKET), so a connection the worker takes meanwhile is never also handed on.
   * On close() there is nobody to hand them to (the pool does not call this then), and out
   * of fds they would be lost: they stay for reclaim().
   */
  handOn(w: WorkerHandle): void {
    if (!this.acceptor || w.state === 'exited' || !this.canHoldUnread(w)) return;
    let unread: ReturnType<WorkerHandle['unread']>;
    try {
      unread = w.unread();
    } catch {
      return; // the channel failed: reclaim() tries again once the worker is gone
    }
    if (unread.handoffs.length > 0) this.acceptor.dispatch(unread.handoffs, unread.acceptedAt);
  }

  /**
   * After an exit: what the worker was sent but never read goes to another worker, then its
   * fds are closed. Out of fds, this waits for some rather than lose connections.
   */
  reclaim(w: WorkerHandle, since = Date.now()): void {
    if (w.channel && !this.canHoldUnread(w) && Date.now() - since < READBACK_GIVE_UP_MS) {
      setTimeout(() => this.reclaim(w, since), READBACK_RETRY_MS);
      return;
    }
    try {
      const unread = w.unread();
      if (unread.handoffs.length > 0) this.acceptor!.dispatch(unread.handoffs, unread.acceptedAt);
    } catch (err) {
      // drainChannel closed what it had read; the cleanup below must happen regardless.
      this.report(err as Error);
    } finally {
      w.release();
      this.unreadBound.delete(w.id);
    }
  }

  /** The primary has the fds to read back what `w` may not have read. */
  private canHoldUnread(w: WorkerHandle): boolean {
    return fdHeadroom() >= (this.unreadBound.get(w.id) ?? 0) + READBACK_SPARE_FDS;
  }
}
