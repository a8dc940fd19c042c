/**
 * The accept thread of mode 'dispatch', set up from the options (started later, once the
 * pool is ready), and what its errors mean to an operator.
 */
import type { Addon, NativeAcceptor } from '../shared/binding';
import { HerdlessError } from '../shared/errors';
import { describeListener, type Listener } from './listeners';
import { AppListeners } from './app-listeners';
import type { NormalizedOptions } from './options';
import { encodeProxyTrust } from './proxy-from';

/** Unused by the acceptor since placement reads each worker's loop state; kept for its signature. */
const STALL_MS = 100;

/**
 * proxyProtocol: how many connections may wait for their PROXY header at once. The largest
 * listen backlog (default 511), at least 64: about what the kernel would hold unaccepted
 * anyway, so a flood of silent peers costs the primary no more fds than its backlogs do.
 * Past it the accept thread stops accepting until headers come or time out.
 */
function proxyWaitingLimit(opts: NormalizedOptions): number {
  const backlogs = opts.listen.map((l) => (l.kind === 'fd' ? 511 : l.backlog));
  return Math.max(64, Math.min(65_536, Math.max(...backlogs)));
}

/** What the accept thread reported: one listener that can no longer accept, or the thread itself. */
function acceptError(err: Error & { listener?: number }, listeners: Listener[], app: AppListeners | undefined): HerdlessError {
  if (err.listener === undefined) {
    return new HerdlessError('ERR_HERDLESS_ACCEPT', `the accept thread stopped: ${err.message}`, { cause: err });
  }
  const l = listeners[err.listener] ?? app?.get(err.listener);
  const where = l ? describeListener(l) : 'unknown';
  const why = (err as { code?: string }).code === 'ESHUTDOWN' ? 'it was shut down: epoll reports a hang-up' : err.message;
  return new HerdlessError(
    'ERR_HERDLESS_ACCEPT',
    `listener ${err.listener} (${where}) can no longer accept connections (${why}) and is no longer watched; ` +
      'the other listeners keep working. Something else shut down or closed this socket (an inherited listen: { fd } ' +
      'is shared with its owner): close() and start again to listen on it anew.',
    { cause: err, listener: err.listener },
  );
}

/**
 * The accept thread over `listeners`, not started yet, with the listeners the app will open
 * itself. The thread cannot throw into JS: what goes wrong in it reaches `report`. On a throw
 * nothing is left open but `listeners`, which stay the caller's.
 */
export function createAcceptor(
  addon: Addon,
  opts: NormalizedOptions,
  listeners: Listener[],
  routeSecret: Buffer,
  report: (err: HerdlessError) => void,
): { acceptor: NativeAcceptor; app: AppListeners } {
  let app: AppListeners | undefined;
  const acceptor = new addon.Acceptor(
    listeners.map((l) => l.fd),
    opts.maxConnectionsPerWorker,
    STALL_MS,
    (err) => report(acceptError(err as Error & { listener?: number }, listeners, app)),
  );
  app = new AppListeners(addon, acceptor);
  try {
    acceptor.setStealAfter(opts.stealAfter);
    acceptor.setRoute(opts.route === 'client-ip', routeSecret);
    if (opts.proxyProtocol) acceptor.setProxyProtocol(opts.proxyTimeout, proxyWaitingLimit(opts), encodeProxyTrust(opts.proxyFrom));
  } catch (err) {
    acceptor.stop();
    app.closeAll(true);
    throw err;
  }
  return { acceptor, app };
}
