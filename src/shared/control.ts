/**
 * The control socket's protocol and where its sockets live: shared by the primary that serves
 * it and the `herdless status|top|scale|reload|upgrade|stop` client. Newline-delimited JSON,
 * one object per line. Requests: { v, id, cmd, args? }. Each request gets exactly one final
 * answer { v, id, ok: true, result } or { v, id, ok: false, error: { code, message } }, which
 * may be preceded by progress lines { v, id, event, ... } (stop says 'stopping' before the
 * process exits). A peer of another user gets one error line with id null, then EOF.
 * Version 1; a primary answers an unknown major version with ERR_HERDLESS_CONTROL.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const CONTROL_VERSION = 1;

export type ControlCommand = 'hello' | 'status' | 'scale' | 'reload' | 'upgrade' | 'stop';

export interface ControlRequest {
  v: number;
  id: number;
  cmd: ControlCommand;
  args?: Record<string, unknown>;
}

export interface ControlReply {
  v: number;
  id: number | null;
  ok?: boolean;
  result?: unknown;
  error?: { code: string; message: string };
  /** A progress line before the final answer. */
  event?: string;
}

/** What `hello` answers: enough to tell instances apart when several run. */
export interface ControlHello {
  v: number;
  pid: number;
  app: string;
  version: string;
  startedAt: number;
}

/** One worker's row in `status`; null where the figure is not available (no health data). */
export interface WorkerRow {
  slot: number;
  id: number;
  pid: number;
  state: string;
  uptimeMs: number;
  restarts: number;
  connections: number;
  requests: number;
  requestsPerSecond: number | null;
  eventLoopDelayP99Ms: number | null;
  elu: number | null;
  heapUsed: number | null;
  rss: number | null;
  /** The worker did not answer for its health figures in time: they are old. */
  stale: boolean;
}

export interface ListenerRow {
  address: string;
  /** What the app's server there speaks ('http', 'https', 'tls', 'tcp'), null until a worker says. */
  protocol: string | null;
  queued: number | null;
  backlog: number | null;
}

export interface StatusResult {
  pid: number;
  version: string;
  app: string;
  mode: string;
  uptimeMs: number;
  size: number;
  min: number;
  max: number;
  workers: WorkerRow[];
  listeners: ListenerRow[];
  /** Dispatch mode: the bucket bound, seconds, under which 99% of connections waited; null without any. */
  dispatchWaitP99Seconds: number | null;
  dispatchWaitCount: number;
}

/**
 * The directory the default control sockets live in, for this user: $XDG_RUNTIME_DIR/herdless,
 * else /run/herdless for root, else herdless-<uid> in the temp dir. The client looks only here,
 * so an instance started with another environment is reached with --control PATH.
 */
export function controlDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'herdless');
  const uid = process.getuid?.() ?? -1;
  if (uid === 0) return '/run/herdless';
  return path.join(os.tmpdir(), `herdless-${uid}`);
}

/** The socket name for an app: its file name without extension (its folder's for index.js). */
export function controlName(app: string): string {
  let base = path.basename(app).replace(/\.[cm]?[jt]s$/, '');
  if (base === 'index' || base === '') base = path.basename(path.dirname(app)) || 'app';
  return base.replace(/[^A-Za-z0-9._-]/g, '_') || 'app';
}

/** Socket files in the control directory (none if it does not exist). */
export function listControlSockets(dir = controlDir()): string[] {
  try {
    return fs
      .readdirSync(dir)
      .filter((n) => n.endsWith('.sock'))
      .sort()
      .map((n) => path.join(dir, n));
  } catch {
    return [];
  }
}
