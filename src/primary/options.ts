/**
 * Public options, their defaults, and the checks that turn a mistake into an
 * ERR_HERDLESS_INVALID_OPTION naming the option. Native code only ever sees checked values.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveCredentials, type Credentials } from './credentials';
import { invalidOption } from '../shared/errors';
import { DEFAULT_SCALE, type ScaleConfig } from './scaling';
import { normalizeProxyFrom, type ProxyTrust } from './proxy-from';

import type { Mode } from '../shared/protocol';
import { LISTEN_OPTION_NAMES, METRICS_OPTION_NAMES, OPTION_NAMES, rejectUnknownOptions } from './option-names';

export { LISTEN_OPTION_NAMES, OPTION_NAMES, rejectUnknownOptions };
export type { Mode };
export type Route = 'least-loaded' | 'client-ip';
/** What becomes of each line a worker writes to stdout/stderr (src/primary/worker-output.ts). */
export type WorkerOutput = 'prefix' | 'json' | 'inherit';

export interface TcpListen {
  port: number;
  host?: string;
  backlog?: number;
}
export interface UnixListen {
  path: string;
  /** Permissions of the socket file, e.g. 0o660. */
  mode?: number;
  backlog?: number;
}
export interface FdListen {
  /** A listening stream socket inherited from the parent (systemd, Circus, a supervisor). */
  fd: number;
}
export type ListenOption = TcpListen | UnixListen | FdListen;

export interface DispatcherOptions {
  /** Absolute path (or specifier resolvable from the current directory) of the module each worker runs. */
  app: string;
  /**
   * Where to listen. Omitted (mode 'dispatch'): wherever the app's own listen() calls say;
   * an app that exports a handler instead is served on $PORT, or 8080.
   */
  listen?: ListenOption | ListenOption[];
  /** Fewest worker processes (default 1). */
  min?: number;
  /** Most worker processes (default: the number of CPUs, at least `min`). */
  max?: number;
  /** Who accepts: 'dispatch' (default), or 'herd' / 'reuseport' for comparison. */
  mode?: Mode;
  /** listen(2) backlog for listeners that do not set their own (default 511). */
  backlog?: number;
  /** Stop accepting when every worker holds this many connections (default unlimited). */
  maxConnectionsPerWorker?: number;
  /** How long a worker may take to load the app and become ready, in ms (default 30000). */
  startTimeout?: number;
  /** Extra environment variables for workers. */
  env?: Record<string, string>;
  /** Node flags for workers (default: none). */
  execArgv?: string[];
  /** The app's own arguments: process.argv.slice(2) in each worker (default: none). */
  args?: string[];
  /** Dynamic sizing between min and max; see src/scaling.ts and the README. */
  scale?: Partial<ScaleConfig>;
  /** Replace a worker gracefully after about this many requests (10% jitter). */
  maxRequestsPerWorker?: number;
  /** Replace a worker gracefully when its RSS exceeds this many bytes. */
  maxMemory?: number;
  /** Replace a worker whose event loop has been blocked this long, ms (default off). */
  stallTimeout?: number;
  /**
   * Take back connections a worker has not read after its loop has been busy (or has not
   * picked them up) for this long, ms, and hand them to a free worker (default 5; 0 = never).
   */
  stealAfter?: number;
  /**
   * Which worker gets a connection: 'least-loaded' (default), or 'client-ip': every
   * connection from one client address goes to the same worker while it is healthy
   * (sticky sessions: socket.io polling, in-memory sessions). Dispatch mode only.
   */
  route?: Route;
  /** Every connection starts with a PROXY protocol header (v1 or v2) from HAProxy/nginx; the app sees the client it names. */
  proxyProtocol?: boolean;
  /** proxyProtocol: close a connection whose header has not come whole within this many ms (default 3000). */
  proxyTimeout?: number;
  /** proxyProtocol: peers whose header may name the client (addresses, CIDR ranges, 'unix';
   *  '*': every peer). Others must still send one; it is read and ignored. Default loopback
   *  and unix sockets. */
  proxyFrom?: string | string[];
  /** Serve Prometheus metrics and a /healthz readiness endpoint from the primary;
   *  perWorker: the app's own prom-client metrics per slot instead of merged. */
  metrics?: { port: number; host?: string; perWorker?: boolean };
  /** Per-worker health figures (event-loop delay, ELU, heap, GC, handles) in stats() and /metrics (default true). */
  health?: boolean;
  /**
   * Worker stdout/stderr, line by line: 'prefix' (default) writes `[slot pid] line`, 'json' one
   * JSON object per line (slot, workerPid, stream, msg), 'inherit' lets stdout through untouched.
   */
  workerOutput?: WorkerOutput;
  /** How long upgrade() waits for the new primary to be ready, ms (default 60000), then kills it. */
  upgradeTimeout?: number;
  /**
   * A control socket for `herdless status|top|scale|reload|upgrade|stop`: a path, true for the
   * default (named after the app under $XDG_RUNTIME_DIR/herdless, /run/herdless for root, or
   * the temp dir), false or absent for none. The CLI turns it on by default.
   */
  control?: string | boolean;
  /** Passed to each worker's http server (ms). */
  headersTimeout?: number;
  requestTimeout?: number;
  keepAliveTimeout?: number;
  /** Run workers as this user (name or uid), with its groups; the primary must be root. */
  user?: string | number;
  /** Run workers with this group (name or gid) as their group; alone, it is their only group. */
  group?: string | number;
}

const WORKER_OUTPUTS: readonly WorkerOutput[] = ['prefix', 'json', 'inherit'];

export type NormalizedListen =
  | { kind: 'tcp'; host: string | undefined; port: number; backlog: number }
  | { kind: 'unix'; path: string; mode: number; backlog: number }
  | { kind: 'fd'; fd: number };

export interface NormalizedOptions {
  app: string;
  listen: NormalizedListen[];
  min: number;
  max: number;
  mode: Mode;
  maxConnectionsPerWorker: number;
  startTimeout: number;
  env: Record<string, string>;
  execArgv: string[];
  args: string[];
  scale: ScaleConfig;
  metrics: { port: number; host?: string; perWorker?: boolean } | undefined;
  health: boolean;
  workerOutput: WorkerOutput;
  maxRequestsPerWorker: number;
  maxMemory: number;
  stallTimeout: number;
  stealAfter: number;
  upgradeTimeout: number;
  /** Socket path, true for the default one, undefined for none. */
  control: string | true | undefined;
  route: Route;
  proxyProtocol: boolean;
  proxyTimeout: number;
  proxyFrom: ProxyTrust;
  /** Only what the user set: an app's own server settings win otherwise. */
  serverTimeouts: { headersTimeout?: number; requestTimeout?: number; keepAliveTimeout?: number };
  /** Who workers run as (`user`/`group`), or undefined to run them as the primary. */
  credentials: Credentials | undefined;
}

/**
 * A healthy loop rarely stays busy past a few ms (a young-generation GC takes 1-2 ms, a batch
 * of 64 new connections 2-5 ms); one that does is running a long handler, a major GC or a
 * synchronous call, and whatever waits in its channel waits for all of it. 5 ms leaves a
 * healthy worker time to read what it was sent, and costs a waiting client little.
 */
export const DEFAULT_STEAL_AFTER_MS = 5;

/** Loading the app anew and starting `min` workers: each may take startTimeout (30 s), most take far less. */
export const DEFAULT_UPGRADE_TIMEOUT_MS = 60_000;

const MODES: readonly Mode[] = ['dispatch', 'herd', 'reuseport'];
const ROUTES: readonly Route[] = ['least-loaded', 'client-ip'];
export const DEFAULT_PROXY_TIMEOUT_MS = 3000;

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function intOption(name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!isInt(value) || value < min || value > max) {
    throw invalidOption(name, `expected an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

function optionalInt(name: string, value: unknown): number | undefined {
  return value === undefined ? undefined : intOption(name, value, 0, 0);
}

function normalizeListen(entry: unknown, i: number, backlog: number, many: boolean): NormalizedListen {
  const name = many ? `listen[${i}]` : 'listen';
  if (entry === null || typeof entry !== 'object') {
    throw invalidOption(name, 'expected { port, host }, { path } or { fd }');
  }
  const l = entry as Record<string, unknown>;
  rejectUnknownOptions(l, Object.keys(LISTEN_OPTION_NAMES), `${name}.`);
  const keys = ['port', 'path', 'fd'].filter((k) => l[k] !== undefined);
  if (keys.length !== 1) throw invalidOption(name, 'give exactly one of "port", "path" or "fd"');
  const ownBacklog = intOption(`${name}.backlog`, l.backlog, backlog, 1, 2 ** 31 - 1);
  if (l.port !== undefined) {
    const port = intOption(`${name}.port`, l.port, 0, 0, 65535);
    if (l.host !== undefined && (typeof l.host !== 'string' || l.host === '')) {
      throw invalidOption(`${name}.host`, 'expected a non-empty string');
    }
    return { kind: 'tcp', host: l.host as string | undefined, port, backlog: ownBacklog };
  }
  if (l.path !== undefined) {
    if (typeof l.path !== 'string' || l.path === '') throw invalidOption(`${name}.path`, 'expected a non-empty string');
    const mode = l.mode === undefined ? -1 : intOption(`${name}.mode`, l.mode, -1, 0, 0o7777);
    return { kind: 'unix', path: path.resolve(l.path), mode, backlog: ownBacklog };
  }
  return { kind: 'fd', fd: intOption(`${name}.fd`, l.fd, -1, 0, 2 ** 31 - 1) };
}

function fraction(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) throw invalidOption(name, `expected a number in (0, 1], got ${String(value)}`);
  return value;
}

function normalizeControl(input: unknown): NormalizedOptions['control'] {
  if (input === undefined || input === false) return undefined;
  if (input === true) return true;
  if (typeof input !== 'string' || input === '') throw invalidOption('control', `expected a socket path, true or false, got ${String(input)}`);
  if (input.length > 100) throw invalidOption('control', `a Unix socket path is at most about 100 bytes, got ${input.length}: ${input}`);
  return input;
}

function normalizeMetrics(input: unknown): NormalizedOptions['metrics'] {
  if (input === undefined) return undefined;
  if (input === null || typeof input !== 'object') throw invalidOption('metrics', 'expected { port, host? }');
  const m = input as Record<string, unknown>;
  rejectUnknownOptions(m, METRICS_OPTION_NAMES, 'metrics.');
  if (m.host !== undefined && (typeof m.host !== 'string' || m.host === '')) throw invalidOption('metrics.host', 'expected a non-empty string');
  if (m.perWorker !== undefined && typeof m.perWorker !== 'boolean') throw invalidOption('metrics.perWorker', `expected true or false, got ${String(m.perWorker)}`);
  return { port: intOption('metrics.port', m.port, -1, 0, 65535), host: m.host as string | undefined, perWorker: m.perWorker === true };
}

function normalizeScale(input: unknown): ScaleConfig {
  if (input === undefined) return { ...DEFAULT_SCALE };
  if (input === null || typeof input !== 'object') throw invalidOption('scale', 'expected an object');
  const s = input as Record<string, unknown>;
  rejectUnknownOptions(s, Object.keys(DEFAULT_SCALE), 'scale.');
  const cfg: ScaleConfig = {
    interval: intOption('scale.interval', s.interval, DEFAULT_SCALE.interval, 10, 60_000),
    idleTimeout: intOption('scale.idleTimeout', s.idleTimeout, DEFAULT_SCALE.idleTimeout, 0),
    upUtilization: fraction('scale.upUtilization', s.upUtilization, DEFAULT_SCALE.upUtilization),
    downUtilization: fraction('scale.downUtilization', s.downUtilization, DEFAULT_SCALE.downUtilization),
    targetUtilization: fraction('scale.targetUtilization', s.targetUtilization, DEFAULT_SCALE.targetUtilization),
    maxSpawn: intOption('scale.maxSpawn', s.maxSpawn, DEFAULT_SCALE.maxSpawn, 1, 1024),
  };
  if (cfg.downUtilization >= cfg.upUtilization) {
    throw invalidOption('scale.downUtilization', `must be below scale.upUtilization (${cfg.upUtilization})`);
  }
  if (cfg.targetUtilization <= cfg.downUtilization || cfg.targetUtilization > cfg.upUtilization) {
    throw invalidOption('scale.targetUtilization', `must be above scale.downUtilization and at most scale.upUtilization`);
  }
  return cfg;
}

export function normalizeOptions(input: unknown): NormalizedOptions {
  if (input === null || typeof input !== 'object') throw invalidOption('options', 'expected an object');
  const o = input as Record<string, unknown>;
  rejectUnknownOptions(o, Object.keys(OPTION_NAMES));

  if (typeof o.app !== 'string' || o.app === '') {
    throw invalidOption('app', 'expected the path of the module each worker runs, e.g. require.resolve("./app.js")');
  }
  let app: string;
  try {
    app = require.resolve(path.resolve(o.app));
  } catch {
    throw invalidOption('app', `cannot find module ${o.app}`);
  }

  const min = intOption('min', o.min, 1, 1, 1024);
  const max = intOption('max', o.max, Math.max(min, os.availableParallelism()), 1, 1024);
  if (max < min) throw invalidOption('max', `must be at least min (${min}), got ${max}`);

  const mode = (o.mode ?? 'dispatch') as Mode;
  if (!MODES.includes(mode)) throw invalidOption('mode', `expected one of ${MODES.join(', ')}, got ${String(o.mode)}`);

  const backlog = intOption('backlog', o.backlog, 511, 1, 2 ** 31 - 1);
  if (o.listen === null) throw invalidOption('listen', 'expected { port, host }, { path } or { fd }, or none (the app listens itself)');
  if (o.listen === undefined && mode !== 'dispatch') {
    throw invalidOption('listen', `required with mode "${mode}": only mode "dispatch" serves what the app's own listen() opens`);
  }
  const many = Array.isArray(o.listen);
  const entries = o.listen === undefined ? [] : many ? (o.listen as unknown[]) : [o.listen];
  if (o.listen !== undefined && entries.length === 0) throw invalidOption('listen', 'expected at least one address');
  const listen = entries.map((e, i) => normalizeListen(e, i, backlog, many));
  if (mode === 'reuseport' && listen.some((l) => l.kind !== 'tcp')) {
    throw invalidOption('mode', '"reuseport" works with TCP listeners only ({ port, host })');
  }

  let maxConnectionsPerWorker = 0; // 0 = unlimited, as the addon reads it
  if (o.maxConnectionsPerWorker !== undefined && o.maxConnectionsPerWorker !== Infinity) {
    maxConnectionsPerWorker = intOption('maxConnectionsPerWorker', o.maxConnectionsPerWorker, 0, 1, 2 ** 31 - 1);
  }
  const route = (o.route ?? 'least-loaded') as Route;
  if (!ROUTES.includes(route)) throw invalidOption('route', `expected one of ${ROUTES.join(', ')}, got ${String(o.route)}`);
  if (o.proxyProtocol !== undefined && typeof o.proxyProtocol !== 'boolean') {
    throw invalidOption('proxyProtocol', `expected true or false, got ${String(o.proxyProtocol)}`);
  }
  const proxyProtocol = o.proxyProtocol === true;
  // Both work in the primary's accept thread: the herd modes have none.
  if (mode !== 'dispatch' && route !== 'least-loaded') throw invalidOption('route', `needs mode "dispatch" (got mode "${mode}")`);
  if (mode !== 'dispatch' && proxyProtocol) throw invalidOption('proxyProtocol', `needs mode "dispatch" (got mode "${mode}")`);
  if (o.env !== undefined && (o.env === null || typeof o.env !== 'object')) throw invalidOption('env', 'expected an object');
  if (o.execArgv !== undefined && !(Array.isArray(o.execArgv) && o.execArgv.every((a) => typeof a === 'string'))) {
    throw invalidOption('execArgv', 'expected an array of strings');
  }
  if (o.args !== undefined && !(Array.isArray(o.args) && o.args.every((a) => typeof a === 'string'))) {
    throw invalidOption('args', 'expected an array of strings');
  }

  if (o.health !== undefined && typeof o.health !== 'boolean') throw invalidOption('health', `expected true or false, got ${String(o.health)}`);
  const workerOutput = (o.workerOutput ?? 'prefix') as WorkerOutput;
  if (!WORKER_OUTPUTS.includes(workerOutput)) {
    throw invalidOption('workerOutput', `expected one of ${WORKER_OUTPUTS.join(', ')}, got ${String(o.workerOutput)}`);
  }

  return {
    health: o.health !== false,
    workerOutput,
    scale: normalizeScale(o.scale),
    metrics: normalizeMetrics(o.metrics),
    maxRequestsPerWorker: intOption('maxRequestsPerWorker', o.maxRequestsPerWorker, 0, 1),
    maxMemory: intOption('maxMemory', o.maxMemory, 0, 1),
    stallTimeout: intOption('stallTimeout', o.stallTimeout, 0, 1),
    stealAfter: intOption('stealAfter', o.stealAfter, DEFAULT_STEAL_AFTER_MS, 0, 60_000),
    upgradeTimeout: intOption('upgradeTimeout', o.upgradeTimeout, DEFAULT_UPGRADE_TIMEOUT_MS, 1),
    control: normalizeControl(o.control),
    route,
    proxyProtocol,
    proxyTimeout: intOption('proxyTimeout', o.proxyTimeout, DEFAULT_PROXY_TIMEOUT_MS, 1, 3_600_000),
    proxyFrom: normalizeProxyFrom(o.proxyFrom),
    app,
    listen,
    min,
    max,
    mode,
    maxConnectionsPerWorker,
    startTimeout: intOption('startTimeout', o.startTimeout, 30_000, 1),
    env: (o.env as Record<string, string>) ?? {},
    execArgv: (o.execArgv as string[]) ?? [],
    args: (o.args as string[]) ?? [],
    serverTimeouts: {
      headersTimeout: optionalInt('headersTimeout', o.headersTimeout),
      requestTimeout: optionalInt('requestTimeout', o.requestTimeout),
      keepAliveTimeout: optionalInt('keepAliveTimeout', o.keepAliveTimeout),
    },
    credentials: resolveCredentials(o.user, o.group),
  };
}
