/**
 * What a worker's IPC channel may cost the primary: a bounded amount, whatever the worker sends.
 *
 * Node's channel passes handles: each process.send(msg, socket) from a worker arrives here as
 * an fd that Node turns into a reading socket (or a listening server) that nobody closes. A
 * worker runs as the unprivileged `user` and the primary is often root; a thousand sends
 * filled the primary's fd table and stopped the accept thread with EMFILE. Node also buffers
 * an unterminated line without bound, and a line that is not JSON throws out of the channel's
 * read callback (an uncaught exception in the primary).
 *
 * So, on every read of the channel, before Node's own code:
 *  - an fd that came with it is closed at once, whatever message carries it (a NODE_HANDLE
 *    message is then answered with an ACK, so the worker closes its copy and its queue moves on);
 *  - a line past MAX_LINE_CHARS, or one that is not JSON, ends the channel: the worker drains
 *    as when its primary goes, and the pool replaces it;
 *  - past MAX_MESSAGES_PER_WINDOW messages in a window, reading stops until the window ends,
 *    so the kernel's socket buffer and the worker hold the rest, not the primary.
 * The herdless protocol is a handful of small messages per worker lifetime; none of this
 * touches it. Node's channel internals are looked up by name, and each guard that cannot
 * find its hook (another Node version) is left out rather than guessed at.
 */
import type { ChildProcess } from 'node:child_process';

export interface IpcCounts {
  /** Handles (fds) workers sent over IPC, closed on arrival. */
  handlesClosed: number;
  /** Channels closed for an oversized or malformed message. */
  channelsClosed: number;
  /** Times reading a worker's channel paused for its message rate. */
  throttled: number;
}

export function emptyIpcCounts(): IpcCounts {
  return { handlesClosed: 0, channelsClosed: 0, throttled: 0 };
}

/** Far above any herdless message (the longest is a load error's stack). */
const MAX_LINE_CHARS = 1 << 20;
const WINDOW_MS = 1000;
const MAX_MESSAGES_PER_WINDOW = 1000;

interface RawChannel {
  onread: (this: RawChannel, ...args: unknown[]) => unknown;
  pendingHandle: { close(): void } | null;
  readStart(): number;
  readStop(): number;
  [key: symbol]: unknown;
}

function symbolNamed(o: object, name: string): symbol | undefined {
  return Object.getOwnPropertySymbols(o).find((s) => s.description === name);
}

export function guardIpc(child: ChildProcess, counts: IpcCounts): void {
  const channelKey = symbolNamed(child, 'kChannelHandle');
  const raw = channelKey ? (child as unknown as Record<symbol, RawChannel | undefined>)[channelKey] : undefined;
  let ended = false;
  let bufferKey: symbol | undefined;
  const end = () => {
    if (ended) return;
    ended = true;
    counts.channelsClosed++;
    // Node's disconnect waits for a message being read to complete: this one never will.
    if (raw) {
      if (bufferKey) raw[bufferKey] = '';
      (raw as { buffering?: boolean }).buffering = false;
    }
    try {
      child.disconnect();
    } catch {
      // already gone
    }
  };

  if (raw && typeof raw.onread === 'function') {
    const nodeOnread = raw.onread;
    bufferKey = symbolNamed(raw, 'kJSONBuffer');
    raw.onread = function (this: RawChannel, ...args: unknown[]) {
      const handle = raw.pendingHandle;
      if (handle) {
        raw.pendingHandle = null;
        counts.handlesClosed++;
        try {
          handle.close();
        } catch {
          // a handle that cannot close has nothing to hold
        }
      }
      if (ended) return;
      try {
        nodeOnread.apply(this, args);
      } catch {
        return end(); // not JSON: Node would have thrown into the primary's event loop
      }
      const pending = bufferKey ? raw[bufferKey] : undefined;
      if (typeof pending === 'string' && pending.length > MAX_LINE_CHARS) end();
    };
  }

  // Node's own listener NACKs a NODE_HANDLE without its handle (we closed it) and the worker
  // would send it three more times; an ACK ends that, and the message goes no further.
  child.prependListener('internalMessage' as 'message', (message: unknown) => {
    countMessage();
    const m = message as { cmd?: unknown };
    if (m === null || typeof m !== 'object' || m.cmd !== 'NODE_HANDLE') return;
    m.cmd = 'HERDLESS_HANDLE_REFUSED';
    if (child.connected) child.send({ cmd: 'NODE_HANDLE_ACK' }, () => {});
  });
  child.prependListener('message', () => countMessage());

  let windowStart = 0;
  let inWindow = 0;
  let paused = false;
  function countMessage(): void {
    const now = Date.now();
    if (now - windowStart >= WINDOW_MS) {
      windowStart = now;
      inWindow = 0;
    }
    if (++inWindow <= MAX_MESSAGES_PER_WINDOW || paused || !raw || ended) return;
    paused = true;
    counts.throttled++;
    raw.readStop();
    setTimeout(() => {
      paused = false;
      if (!ended && child.connected) raw.readStart();
    }, WINDOW_MS - (now - windowStart)).unref();
  }
}
