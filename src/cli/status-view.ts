/** `herdless status` and `top` as text: a header line, a worker table, a listener table. */
import type { StatusResult } from '../shared/control';

export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

export function bytes(n: number | null): string {
  if (n === null) return '-';
  const units = ['B', 'K', 'M', 'G', 'T'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 && i > 0 ? v.toFixed(1) : Math.round(v)}${units[i]}`;
}

function num(n: number | null, digits = 1): string {
  return n === null ? '-' : n.toFixed(digits);
}

function seconds(s: number): string {
  return s < 0.001 ? `${+(s * 1e6).toFixed(0)}us` : s < 1 ? `${+(s * 1000).toFixed(2)}ms` : `${s}s`;
}

function table(rows: string[][], rightAligned: Set<number>): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd());
}

export function renderStatus(s: StatusResult): string[] {
  const head =
    `herdless ${s.version}  pid ${s.pid}  ${s.app}  mode ${s.mode}  up ${duration(s.uptimeMs)}  ` +
    `${s.size} worker${s.size === 1 ? '' : 's'} (min ${s.min}, max ${s.max})`;
  const workers = table(
    [
      ['SLOT', 'PID', 'STATE', 'UPTIME', 'RESTARTS', 'CONNS', 'REQUESTS', 'REQ/S', 'ELD p99', 'ELU', 'HEAP', 'RSS'],
      ...s.workers.map((w) => [
        String(w.slot),
        String(w.pid),
        w.state + (w.stale ? '*' : ''),
        duration(w.uptimeMs),
        String(w.restarts),
        String(w.connections),
        String(w.requests),
        num(w.requestsPerSecond),
        w.eventLoopDelayP99Ms === null ? '-' : `${w.eventLoopDelayP99Ms.toFixed(1)}ms`,
        w.elu === null ? '-' : `${Math.round(w.elu * 100)}%`,
        bytes(w.heapUsed),
        bytes(w.rss),
      ]),
    ],
    new Set([0, 1, 4, 5, 6, 7, 8, 9, 10, 11]),
  );
  const wait =
    s.dispatchWaitP99Seconds === null ? '-' : `<= ${seconds(s.dispatchWaitP99Seconds)}`;
  const listeners = table(
    [
      ['LISTENER', 'PROTOCOL', 'QUEUED/BACKLOG', 'DISPATCH WAIT p99'],
      ...s.listeners.map((l) => [l.address, l.protocol ?? '?', `${l.queued ?? '?'}/${l.backlog ?? '?'}`, s.mode === 'dispatch' ? wait : 'n/a']),
    ],
    new Set(),
  );
  const stale = s.workers.some((w) => w.stale) ? ['* health figures are stale: the worker did not answer in time'] : [];
  return [head, '', ...workers, ...stale, '', ...listeners];
}
