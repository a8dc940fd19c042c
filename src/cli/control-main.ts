/**
 * `herdless status|top|scale|reload|upgrade|stop`: a client of a running herdless's control
 * socket. Loads no addon and no Dispatcher: a status round trip is a Node start-up and one
 * request. Exit codes (for scripts): 0 done; 1 the action failed or partly failed (a reload
 * with failed workers, an upgrade that failed); 2 usage; 3 no herdless found, or it went
 * away; 4 several found (pick one with --pid or --control); 5 refused (another user's).
 */
import { parseArgs } from 'node:util';
import type { StatusResult } from '../shared/control';
import { ControlError, type ControlConnection } from '../shared/control-connection';
import type { ReloadResult, ScaleResult, UpgradeResult } from '../primary/control/actions';
import { connect, findInstance } from './find-instance';
import { renderStatus } from './status-view';
import { runTop } from './top';

export const COMMANDS = ['status', 'top', 'scale', 'reload', 'upgrade', 'stop'] as const;
type Command = (typeof COMMANDS)[number];

export const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3, several: 4, refused: 5 } as const;

const USAGE = `Usage: herdless <command> [--control PATH | --pid N]

  status [--json]        workers (slot, pid, state, uptime, restarts, connections, requests,
                         req/s, event-loop delay p99, ELU, heap, RSS) and listeners
  top [-n N]             the same, live, once a second (q or Ctrl-C quits)
  scale N|+k|-k          resize the pool (clamped to --min/--max); prints the size reached
  reload                 replace every worker, a few at a time; prints how many and how long
  upgrade                start a new primary that takes over the sockets; prints its pid
  stop [--timeout ms]    stop gracefully (workers still busy after the timeout are killed)

Finds the instance by --control PATH, else --pid N, else the only one in the control
directory ($XDG_RUNTIME_DIR/herdless, /run/herdless for root, else $TMPDIR/herdless-<uid>).
Exit codes: 0 done, 1 failed, 2 usage, 3 none found, 4 several found, 5 refused.
`;

class UsageError extends Error {}

function usage(message: string): never {
  throw new UsageError(message);
}

function parse(argv: string[]) {
  // "scale -1" is a count, not a flag.
  const relative = argv[0] === 'scale' ? argv.findIndex((x, i) => i > 0 && /^-\d+$/.test(x)) : -1;
  const { values, positionals } = parseArgs({
    args: relative < 0 ? argv : argv.filter((_, i) => i !== relative),
    options: {
      control: { type: 'string' },
      pid: { type: 'string' },
      json: { type: 'boolean' },
      timeout: { type: 'string' },
      n: { type: 'string', short: 'n' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  const cmd = positionals[0] as Command;
  const rest = relative < 0 ? positionals.slice(1) : [argv[relative], ...positionals.slice(1)];
  const int = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) usage(`--${name}: expected a non-negative integer, got "${v}"`);
    return Number(v);
  };
  if (cmd === 'scale') {
    if (rest.length !== 1 || !/^[+-]?\d+$/.test(rest[0])) usage('scale: expected N, +k or -k');
  } else if (rest.length > 0) usage(`${cmd}: unexpected ${rest.join(' ')}`);
  if (values.timeout !== undefined && cmd !== 'stop') usage('--timeout is for stop');
  if (values.json && cmd !== 'status') usage('--json is for status');
  if (values.n !== undefined && cmd !== 'top') usage('-n is for top');
  if (values.control !== undefined && values.pid !== undefined) usage('give --control or --pid, not both');
  return {
    cmd,
    scale: rest[0],
    control: values.control,
    pid: int('pid', values.pid),
    json: values.json ?? false,
    timeout: int('timeout', values.timeout),
    iterations: int('n', values.n),
    help: values.help ?? false,
  };
}

async function run(conn: ControlConnection, a: ReturnType<typeof parse>): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  switch (a.cmd) {
    case 'status': {
      const s = await conn.request<StatusResult>('status');
      out(a.json ? JSON.stringify(s) : renderStatus(s).join('\n'));
      return EXIT.ok;
    }
    case 'top':
      return runTop(conn, { iterations: a.iterations });
    case 'scale': {
      const spec = /^[+-]/.test(a.scale) ? { delta: Number(a.scale) } : { to: Number(a.scale) };
      const r = await conn.request<ScaleResult>('scale', spec);
      out(`scale: ${r.from} -> ${r.to} worker${r.to === 1 ? '' : 's'}${r.to !== r.asked ? ` (asked ${r.asked}, clamped to --min/--max)` : ''}`);
      return EXIT.ok;
    }
    case 'reload': {
      const r = await conn.request<ReloadResult>('reload');
      out(`reload: ${r.replaced} worker${r.replaced === 1 ? '' : 's'} replaced in ${r.seconds.toFixed(1)} s, ${r.failed} failed${r.error ? `: ${r.error.code ?? ''} ${r.error.message}` : ''}`);
      return r.failed > 0 || r.error ? EXIT.failed : EXIT.ok;
    }
    case 'upgrade': {
      const r = await conn.request<UpgradeResult>('upgrade');
      out(`upgrade: pid ${r.from} -> pid ${r.pid} in ${r.seconds.toFixed(1)} s; the old primary drains and exits`);
      return EXIT.ok;
    }
    case 'stop': {
      let stopping: { pid?: number } | undefined;
      const began = Date.now();
      try {
        const r = await conn.request<{ seconds: number }>('stop', a.timeout === undefined ? {} : { timeout: a.timeout }, (e) => (stopping = e));
        out(`stop: pid ${stopping?.pid ?? '?'} stopped in ${r.seconds.toFixed(1)} s`);
      } catch (err) {
        // The process ended before it could answer: what stop asked for.
        if (!stopping || (err as { code?: string }).code !== 'ECONNRESET') throw err;
        out(`stop: pid ${stopping.pid} exited after ${((Date.now() - began) / 1000).toFixed(1)} s`);
      }
      return EXIT.ok;
    }
    default:
      return usage(`unknown command "${String(a.cmd)}"`);
  }
}

function exitCodeOf(err: unknown): number {
  switch ((err as { code?: string }).code) {
    case 'ERR_HERDLESS_NO_INSTANCE':
    case 'ECONNRESET':
      return EXIT.notFound;
    case 'ERR_HERDLESS_SEVERAL_INSTANCES':
      return EXIT.several;
    case 'ERR_HERDLESS_CONTROL_REFUSED':
      return EXIT.refused;
    case 'ERR_HERDLESS_INVALID_OPTION':
      return EXIT.usage;
    default:
      return EXIT.failed;
  }
}

export async function controlMain(argv: string[]): Promise<number> {
  let a: ReturnType<typeof parse>;
  try {
    a = parse(argv);
  } catch (err) {
    process.stderr.write(`herdless: ${(err as Error).message}\n${USAGE}`);
    return EXIT.usage;
  }
  if (a.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  let conn: ControlConnection | undefined;
  try {
    conn = await connect(await findInstance({ control: a.control, pid: a.pid }));
    return await run(conn, a);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`herdless: ${err.message}\n${USAGE}`);
      return EXIT.usage;
    }
    const code = (err as { code?: string }).code;
    const prefix = err instanceof ControlError || code?.startsWith('ERR_HERDLESS_') ? `${code}: ` : '';
    process.stderr.write(`herdless ${a.cmd}: ${prefix}${(err as Error).message}\n`);
    return exitCodeOf(err);
  } finally {
    conn?.close();
  }
}
