/**
 * `herdless [options] <app>`: start a Dispatcher from the command line and run it until a
 * signal stops it. Flags override a --config file, which overrides the defaults. Every
 * start error ends the process with "CODE: message" on stderr and status 2 for a usage
 * mistake (a bad flag or option), 1 for anything else (EADDRINUSE, ERR_HERDLESS_APP_LOAD, ...).
 */
import * as path from 'node:path';
import { loadAddon } from '../shared/binding';
import { parseCli, USAGE, type CliArgs, type LogFormat } from './args';
import { parseBind, sealInherited, systemdListeners, upgradeFdListeners } from './binds';
import { loadConfig, type FileConfig } from './config';
import { createLogger, describeError, type Logger } from './log';
import { createNotifier, type Notifier } from './notify';
import { handleSignals } from './signals';
import type { CliControl } from './control-server';
import { Dispatcher } from '../primary/dispatcher';
import { invalidOption } from '../shared/errors';
import { answerUpgrade, deferUpgradeAnswer, metricsKey, upgradedFrom } from '../primary/inherited';
import type { MetricsServer } from '../primary/metrics';
import { normalizeOptions, type DispatcherOptions, type ListenOption } from '../primary/options';

const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
const EXIT_USAGE = 2;
const EXIT_START = 1;
const EARLY_SIGNALS = ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR1', 'SIGUSR2'] as const;

/** undefined: none given, so the app's own listen() calls say where (or $PORT / 8080 for a handler). */
function listenOptions(args: CliArgs, config: FileConfig, upgradeFds: ListenOption[] | undefined): ListenOption[] | undefined {
  const listen: ListenOption[] = [];
  if (args.port !== undefined) listen.push(args.host === undefined ? { port: args.port } : { port: args.port, host: args.host });
  if (args.unix !== undefined) listen.push({ path: args.unix });
  const binds = args.binds.map(parseBind);
  // After an upgrade, inherited sockets (fd://N, systemd's) come from the old primary instead.
  if (upgradeFds) listen.push(...binds.filter((b) => !('fd' in b)), ...upgradeFds);
  else listen.push(...binds, ...systemdListeners());
  if (listen.length > 0) return listen;
  if (config.listen !== undefined) return ([] as ListenOption[]).concat(config.listen);
  return undefined;
}

function metricsAddress(value: FileConfig['metrics']): { port: number; host?: string } | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'object') return value;
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d+)$/.exec(String(value));
  if (!m) throw invalidOption('--metrics', `expected [host:]port, got "${value}"`);
  return m[1] ? { host: m[1], port: Number(m[2]) } : { port: Number(m[2]) };
}

function banner(d: Dispatcher, opts: DispatcherOptions, metrics: MetricsServer | undefined, control: CliControl | undefined, log: Logger): void {
  const a = d.address();
  // What the app's server speaks (https, tls, a plain net server), as its workers said.
  const scheme = d.stats().listeners[0]?.protocol ?? 'http';
  const where = a === null ? 'an inherited socket' : typeof a === 'string' ? `unix:${a}` : `${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  const mode = opts.mode ?? 'dispatch';
  const count = Math.max(1, d.stats().listeners.length);
  const more = count > 1 ? ` and ${count - 1} more` : '';
  const m = metrics ? `, metrics on :${metrics.address().port}` : '';
  const c = control ? `, control ${control.server.path}` : '';
  log.info(
    'listening',
    { address: a, size: d.size, mode, metrics: metrics?.address().port, control: control?.server.path },
    `listening on ${where}${more} (${d.size} worker${d.size === 1 ? '' : 's'}, mode ${mode}, pid ${process.pid}${c}${m})`,
  );
}

function logPoolEvents(d: Dispatcher, log: Logger): void {
  d.on('worker-start', ({ id, slot, pid }) =>
    log.info('worker-start', { worker: id, slot, workerPid: pid }, `worker ${id} started in slot ${slot} (pid ${pid})`),
  );
  d.on('worker-exit', ({ id, pid, code, signal, reason }) =>
    log.info('worker-exit', { worker: id, workerPid: pid, code, signal, reason }, `worker ${id} exited (pid ${pid}, ${signal ?? `code ${code}`}, ${reason})`),
  );
  d.on('scale', ({ from, to, reason }) => log.info('scale', { from, to, reason }, `pool ${from} -> ${to} workers (${reason})`));
}

/** The control socket's path: undefined for the default one, false for none (--control off). */
function controlPath(flag: string | undefined, config: FileConfig['control']): string | undefined | false {
  if (flag !== undefined) return flag === 'off' ? false : flag;
  if (config === false) return false;
  return typeof config === 'string' ? config : undefined;
}

/** A new primary of an upgrade that fails before Dispatcher.start says why to the old one. */
function tellOldPrimary(err: unknown): void {
  try {
    answerUpgrade(loadAddon(), { ready: false, error: err });
  } catch {
    // no addon: there was no upgrade either
  }
}

async function main(argv: string[]): Promise<void> {
  let args: CliArgs;
  try {
    args = parseCli(argv);
  } catch (err) {
    process.stderr.write(`herdless: ${describeError(err)}\nTry herdless --help\n`);
    process.exit(EXIT_USAGE);
  }
  if (args.help) return void process.stdout.write(USAGE);
  if (args.version) return void process.stdout.write(`${require('../../package.json').version}\n`);

  // Signals that arrive while starting must not stop the process (TTIN/TTOU would) or start
  // the inspector (USR1) or end it (USR2); TERM and INT keep their default: die, and workers follow.
  const early = () => {};
  for (const s of EARLY_SIGNALS) process.on(s, early);

  let log = createLogger(args.log ?? 'text');
  let d: Dispatcher | undefined;
  let notify: Notifier | undefined;
  try {
    deferUpgradeAnswer();
    // Before any worker is spawned: they must not inherit NOTIFY_SOCKET.
    const upgradeFds = upgradeFdListeners();
    const from = upgradedFrom(loadAddon());
    notify = createNotifier(log, process.env, process.pid, from);
    const config = args.config ? await loadConfig(args.config) : {};
    log = createLogger(args.log ?? (config.log as LogFormat | undefined) ?? 'text');
    notify.setLogger(log);
    const app = args.app ? path.resolve(args.app) : config.app;
    if (!app) throw invalidOption('<app>', 'missing: herdless [options] <app> (or "app" in --config)');
    const { metrics: metricsConfig, log: _log, shutdownTimeout, control: controlConfig, ...base } = config;
    const format = args.log ?? (config.log as LogFormat | undefined) ?? 'text';
    const opts: DispatcherOptions = {
      // Worker lines as the rest of the log: one JSON object each under --log json.
      ...(format === 'json' ? { workerOutput: 'json' as const } : {}),
      ...base,
      ...args.options,
      scale: { ...base.scale, ...args.options.scale },
      app,
    };
    const listen = listenOptions(args, config, upgradeFds);
    if (listen !== undefined) opts.listen = sealInherited(listen);
    const { min, max, mode } = normalizeOptions(opts);
    const metricsAt = metricsAddress(args.metrics ?? metricsConfig);
    const controlAt = controlPath(args.control, controlConfig);
    d = await Dispatcher.start(opts);
    for (const s of EARLY_SIGNALS) process.off(s, early);
    logPoolEvents(d, log);
    const running = d;
    const notifier = notify;
    const status = () => `serving, ${running.size} worker${running.size === 1 ? '' : 's'} (min ${min}, max ${max}), mode ${mode}`;
    let metrics: MetricsServer | undefined;
    let control: CliControl | undefined;
    const controls = handleSignals(d, log, {
      shutdownTimeout: args.shutdownTimeout ?? shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
      exit: (code) => {
        void Promise.all([metrics?.close(), control?.beforeExit()]).finally(() => process.exit(code));
      },
      notify: notifier,
      status,
      upgradeOptions: () => {
        const fd = metrics?.fd();
        return { env: notifier.successorEnv(), sockets: fd !== undefined && metricsAt ? [{ fd, key: metricsKey(metricsAt) }] : [] };
      },
    });
    // One STATUS= line per burst of pool events.
    let statusQueued = false;
    const updateStatus = () => {
      if (statusQueued) return;
      statusQueued = true;
      setImmediate(() => {
        statusQueued = false;
        if (!controls.stopping) notifier.status(status());
      });
    };
    for (const e of ['worker-start', 'worker-exit', 'scale'] as const) d.on(e, updateStatus);
    notifier.watchdog(() => controls.stopping || running.size >= 1);
    // Listeners that can no longer accept (someone else shut them down): the others still serve.
    const deadListeners = new Set<number>();
    d.on('error', (err) => {
      log.error('error', { code: (err as { code?: string }).code }, describeError(err));
      // Nothing left to serve with: exit non-zero so a supervisor restarts or reports us.
      const { code, listener } = err as { code?: string; listener?: number };
      if (code === 'ERR_HERDLESS_ACCEPT') {
        // One listener gone while others serve is logged above; none left, or the accept thread itself, ends us.
        if (listener !== undefined) deadListeners.add(listener);
        if (listener === undefined || deadListeners.size >= (d?.stats().listeners.length ?? 0)) controls.stop(code, EXIT_START);
      } else if (code === 'ERR_HERDLESS_CRASH_LOOP' && running.size === 0) controls.stop(code, EXIT_START);
    });
    // Loaded only when asked for: prom-client takes longer to load than the rest of the CLI.
    if (metricsAt) metrics = await (await import('../primary/metrics.js')).startMetricsServer(d, { ...metricsAt, ready: () => !controls.stopping && running.size >= 1 });
    // Once the new primary of an upgrade serves, it alone answers /healthz and /metrics: this
    // one, draining, would answer 503 to a load balancer's check and pull the host out.
    d.once('upgraded', () => void metrics?.close());
    if (controlAt !== false) {
      const info = { app, min, max, mode, version: require('../../package.json').version as string, startedAt: Date.now() };
      try {
        // Loaded once the workers are on their way: nothing before the first spawn waits for it.
        const { startCliControl } = await import('./control-server.js');
        control = await startCliControl(loadAddon(), d, controls, { path: controlAt, info, takeOverFrom: from });
      } catch (err) {
        // The default socket is a convenience: serving goes on without it. One asked for is not.
        if (controlAt !== undefined) throw err;
        log.error('control', { code: (err as { code?: string }).code }, `no control socket: ${describeError(err)}`);
      }
    }
    banner(d, opts, metrics, control, log);
    // systemd hears of the new main pid before the old primary, told next, starts to drain and exit.
    notifier.ready(status(), from === undefined ? undefined : process.pid);
    if (from !== undefined) {
      answerUpgrade(loadAddon(), { ready: true });
      log.info('took-over', { from }, `took over from pid ${from}`);
    }
  } catch (err) {
    log.error('start-failed', { code: (err as { code?: string }).code }, `cannot start: ${describeError(err)}`);
    tellOldPrimary(err);
    await d?.close({ timeout: 1000 }).catch(() => {});
    process.exit((err as { code?: string }).code === 'ERR_HERDLESS_INVALID_OPTION' ? EXIT_USAGE : EXIT_START);
  }
}

void main(process.argv.slice(2));
