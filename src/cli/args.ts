/**
 * Command-line flags: their names, help text, and how each becomes a Dispatcher option.
 * node:util parseArgs does the tokenising; every value is checked here so that a mistake
 * fails before anything is bound or spawned, with the flag's name in the message.
 */
import { normalizeProxyFrom } from '../primary/proxy-from';
import { parseArgs } from 'node:util';
import { invalidOption } from '../shared/errors';
import type { DispatcherOptions, Mode, Route } from '../primary/options';

export const USAGE = `Usage: herdless [options] <app> [-- app args]

  <app>                    module each worker runs as its main module: a server that calls
                           listen() itself (as under node or cluster), or a request
                           listener, server or factory
  -- app args              the app's own arguments (process.argv.slice(2) in each worker)
      --node-args <flags>  Node flags for workers, as one word: --node-args="--import tsx
                           --max-old-space-size=512" (repeatable; pm2's node_args)

Listening (repeatable; default: wherever the app's own listen() calls say, as under
cluster; an app that exports a handler instead: $PORT or 8080 on all interfaces):
  -p, --port <n>           TCP port (0 picks a free one)
      --host <addr>        host for --port
      --unix <path>        Unix socket
  -b, --bind <addr>        host:port, [v6]:port, :port, unix:/path, fd://N
                           systemd socket activation (LISTEN_FDS) is used when present
Pool:
  -w, --workers <n>        fixed size (sets --min and --max)
      --min <n>, --max <n> size range (default 1 .. CPU count)
      --mode <m>           dispatch (default) | herd | reuseport
      --max-requests <n>   recycle a worker after about n requests
      --max-memory <bytes> recycle a worker past this RSS (suffix k, m or g allowed)
      --max-connections <n> per worker, then connections wait in the backlog
      --stall-timeout <ms> replace a worker whose event loop is blocked this long
      --steal-after <ms>   take back connections a busy worker has not read (default 5, 0 = never)
      --route <r>          least-loaded (default) | client-ip (one client address, one worker)
      --proxy-protocol     every connection starts with a PROXY v1/v2 header (HAProxy, nginx)
      --proxy-timeout <ms> close a connection without a whole header by then (default 3000)
      --proxy-from <list>  peers whose header may name the client: addresses, CIDRs, unix, or *
                           (comma-separated; default 127.0.0.0/8,::1,unix)
      --start-timeout <ms> --backlog <n>
      --idle-timeout <ms>  retire a surplus worker idle this long (scale.idleTimeout)
      --scale-interval <ms>
      --headers-timeout <ms> --request-timeout <ms> --keep-alive-timeout <ms>
      --shutdown-timeout <ms> graceful stop deadline, then workers are killed (default 30000)
      --user <name|uid>    run workers as this user, with its groups (the primary runs as root)
      --group <name|gid>   run workers with this group
      --upgrade-timeout <ms> how long SIGUSR2's new primary may take to be ready (default 60000)
Other:
  -c, --config <file>      JSON, or a JS module exporting options; flags win
      --log <text|json>    log format on stderr (default text)
      --metrics <[host:]port> Prometheus /metrics and /healthz (host default 127.0.0.1)
      --control <path|off> control socket for the commands below (default: named
                           after the app in $XDG_RUNTIME_DIR/herdless, /run/herdless
                           as root, else $TMPDIR/herdless-<uid>)
  -h, --help, -v, --version

Commands (talk to a running herdless over its control socket; see herdless status --help):
  herdless status [--json]    herdless top    herdless scale N|+k|-k
  herdless reload             herdless upgrade    herdless stop [--timeout ms]

Signals: TERM/INT graceful stop (a second one forces), HUP rolling reload,
TTIN/TTOU one worker more/less, USR1 status summary on stderr, USR2 upgrade:
a new primary (herdless and the app read anew) takes over the sockets, then this one drains.
systemd Type=notify is supported when NOTIFY_SOCKET is set (READY, RELOADING, STOPPING, WATCHDOG).
`;

const FLAGS = {
  port: { type: 'string', short: 'p' },
  host: { type: 'string' },
  unix: { type: 'string' },
  bind: { type: 'string', short: 'b', multiple: true },
  workers: { type: 'string', short: 'w' },
  min: { type: 'string' },
  max: { type: 'string' },
  mode: { type: 'string' },
  'max-requests': { type: 'string' },
  'max-memory': { type: 'string' },
  'max-connections': { type: 'string' },
  'stall-timeout': { type: 'string' },
  'steal-after': { type: 'string' },
  route: { type: 'string' },
  'proxy-protocol': { type: 'boolean' },
  'proxy-timeout': { type: 'string' },
  'proxy-from': { type: 'string' },
  'start-timeout': { type: 'string' },
  backlog: { type: 'string' },
  'idle-timeout': { type: 'string' },
  'scale-interval': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'keep-alive-timeout': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  user: { type: 'string' },
  group: { type: 'string' },
  'upgrade-timeout': { type: 'string' },
  'node-args': { type: 'string', multiple: true },
  config: { type: 'string', short: 'c' },
  log: { type: 'string' },
  metrics: { type: 'string' },
  control: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

export type LogFormat = 'text' | 'json';

export interface CliArgs {
  help: boolean;
  version: boolean;
  app?: string;
  /** Listen addresses as typed (parsed in binds.ts). */
  binds: string[];
  port?: number;
  host?: string;
  unix?: string;
  config?: string;
  log?: LogFormat;
  metrics?: string;
  /** Control socket path, or 'off'. */
  control?: string;
  shutdownTimeout?: number;
  /** Everything that maps straight onto DispatcherOptions. */
  options: Partial<DispatcherOptions>;
}

function int(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw invalidOption(`--${flag}`, `expected a non-negative integer, got "${value}"`);
  return Number(value);
}

function bytes(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)([kmg]?)b?$/i.exec(value);
  if (!m) throw invalidOption(`--${flag}`, `expected bytes such as 536870912 or 512m, got "${value}"`);
  return Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase());
}

/** Drop undefined values so that they do not override a config file's. */
function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** `--node-args` values, split at whitespace as pm2 splits node_args (no quoting inside). */
function nodeArgs(values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  const flags = values.flatMap((value) => value.split(/\s+/)).filter((a) => a !== '');
  // A first word that is not a flag ("--node-args tsx") would make Node run it as the script.
  if (flags.length > 0 && !flags[0].startsWith('-')) throw invalidOption('--node-args', `expected Node flags, got "${flags[0]}"`);
  return flags;
}

export function parseCli(argv: string[]): CliArgs {
  // Everything after the first "--" belongs to the app, not to herdless.
  const end = argv.indexOf('--');
  const appArgs = end === -1 ? undefined : argv.slice(end + 1);
  if (end !== -1) argv = argv.slice(0, end);
  const { values: v, positionals } = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
  if (positionals.length > 1) throw invalidOption('<app>', `expected one app module, got ${positionals.join(' ')}`);
  if (v.log !== undefined && v.log !== 'text' && v.log !== 'json') throw invalidOption('--log', `expected text or json, got "${v.log}"`);

  if (v.route !== undefined && v.route !== 'least-loaded' && v.route !== 'client-ip') {
    throw invalidOption('--route', `expected least-loaded or client-ip, got "${v.route}"`);
  }
  const workers = int('workers', v.workers);
  if (workers !== undefined && (v.min !== undefined || v.max !== undefined)) {
    throw invalidOption('--workers', 'give either --workers or --min/--max');
  }
  const scale = defined({ idleTimeout: int('idle-timeout', v['idle-timeout']), interval: int('scale-interval', v['scale-interval']) });
  const options = defined<Partial<DispatcherOptions>>({
    min: workers ?? int('min', v.min),
    max: workers ?? int('max', v.max),
    mode: v.mode as Mode | undefined,
    maxRequestsPerWorker: int('max-requests', v['max-requests']),
    maxMemory: bytes('max-memory', v['max-memory']),
    maxConnectionsPerWorker: int('max-connections', v['max-connections']),
    stallTimeout: int('stall-timeout', v['stall-timeout']),
    stealAfter: int('steal-after', v['steal-after']),
    route: v.route as Route | undefined,
    proxyProtocol: v['proxy-protocol'],
    proxyTimeout: int('proxy-timeout', v['proxy-timeout']),
    proxyFrom: v['proxy-from'],
    startTimeout: int('start-timeout', v['start-timeout']),
    backlog: int('backlog', v.backlog),
    headersTimeout: int('headers-timeout', v['headers-timeout']),
    requestTimeout: int('request-timeout', v['request-timeout']),
    keepAliveTimeout: int('keep-alive-timeout', v['keep-alive-timeout']),
    upgradeTimeout: int('upgrade-timeout', v['upgrade-timeout']),
    scale: Object.keys(scale).length > 0 ? scale : undefined,
    user: v.user,
    group: v.group,
    execArgv: nodeArgs(v['node-args']),
    args: appArgs,
  });
  if (v.host !== undefined && v.port === undefined) throw invalidOption('--host', 'needs --port');
  if (v['proxy-from'] !== undefined) normalizeProxyFrom(v['proxy-from'], '--proxy-from'); // named as the flag

  return {
    help: v.help ?? false,
    version: v.version ?? false,
    app: positionals[0],
    binds: v.bind ?? [],
    port: int('port', v.port),
    host: v.host,
    unix: v.unix,
    config: v.config,
    log: v.log as LogFormat | undefined,
    metrics: v.metrics,
    control: v.control,
    shutdownTimeout: int('shutdown-timeout', v['shutdown-timeout']),
    options,
  };
}
