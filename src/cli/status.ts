/** The USR1 status summary: d.stats() as a few readable lines (or one JSON line). */
import type { Dispatcher } from '../dispatcher';
import type { Logger } from './log';

export function logStatus(d: Dispatcher, log: Logger): void {
  const s = d.stats();
  const x = s.dispatcher;
  const errors = Object.entries(x.acceptErrors).map(([errno, n]) => `${errno} ${n}`).join(', ') || 'none';
  const lines = [
    `status: mode ${s.mode}, ${d.size} workers; accepted ${x.accepted}, handed off ${x.handedOff}, ` +
      `re-dispatched ${x.redispatched}, waiting ${x.waiting}, back-pressure pauses ${x.backpressurePauses}, ` +
      `fd pauses ${x.fdPauses}, accept errors: ${errors}`,
    ...s.workers.map(
      (w) =>
        `  worker ${w.id} pid ${w.pid} ${w.state}: ${w.connectionsOpen} open, ${w.requestsInFlight} in flight, ` +
        `${w.requestsServed} served, ${w.connectionsReceived} received`,
    ),
  ];
  log.info('status', { size: d.size, stats: s }, lines.join('\n'));
}
