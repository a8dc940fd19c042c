/**
 * The old primary's side of an upgrade: start a new primary from the same command line
 * (node, its flags, the script and its arguments, same cwd and environment, so herdless
 * and the app are read from disk again) and hand it every listening socket, which therefore
 * never closes. src/inherited.ts is the new primary's side and documents the variables.
 *
 * The new primary shares our process group and session (Ctrl-C and a terminal's hang-up
 * still reach it; systemd's KillMode=control-group sees the cgroup anyway) and has no
 * parent-death signal: it outlives us, re-parented to init or the service manager.
 * stdout and stderr are inherited, not piped, because a pipe would break when we exit;
 * the reason for a failed start comes back over the handshake socket instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { HerdlessError } from '../shared/errors';
import { INHERITED_ENV, UPGRADE_FD_ENV, UPGRADE_FROM_ENV, type InheritedSocket } from './inherited';

const FIRST_FD = 3;
/** A { fd: N } listener goes to the same N in the new primary, up to this N; past it, to the next free fd. */
const MAX_FIXED_FD = 1023;
/** A new primary that said "failed" gets this long to exit by itself. */
const FAILED_EXIT_GRACE_MS = 5000;

export interface SuccessorOptions {
  /** Variables the new primary needs that this process removed from its own env (NOTIFY_SOCKET ...). */
  env?: Record<string, string | undefined>;
  timeout: number;
}

export interface Successor {
  pid: number;
  /** Resolves when its workers are ready; rejects with ERR_HERDLESS_UPGRADE. */
  ready: Promise<void>;
  /** Kill it (SIGKILL; its workers follow by their parent-death signal). */
  abort(why: string): void;
}

function upgradeError(pid: number | undefined, why: string, extra: Record<string, unknown>): HerdlessError {
  return new HerdlessError(
    'ERR_HERDLESS_UPGRADE',
    `the new primary${pid ? ` (pid ${pid})` : ''} ${why}; this primary keeps serving. Fix the cause (its log is above) and upgrade again.`,
    { pid, ...extra },
  );
}

/**
 * Where each socket goes in the new primary: a { fd: N } listener ("fd N") at N, so that the
 * same script's `listen: { fd: N }` finds it there; the others, and the handshake socket, at
 * the lowest fds from 3 that are left.
 */
function placeFds(sockets: InheritedSocket[]): { table: InheritedSocket[]; handshake: number } {
  const taken = new Set<number>();
  const fixed = sockets.map((s) => {
    const n = Number(/^fd (\d+)$/.exec(s.key)?.[1]);
    if (!(n >= FIRST_FD && n <= MAX_FIXED_FD) || taken.has(n)) return undefined;
    taken.add(n);
    return n;
  });
  let next = FIRST_FD;
  const free = (): number => {
    while (taken.has(next)) next++;
    taken.add(next);
    return next;
  };
  const table = sockets.map((s, i) => ({ fd: fixed[i] ?? free(), key: s.key }));
  return { table, handshake: free() };
}

export function startSuccessor(sockets: InheritedSocket[], opts: SuccessorOptions): Successor {
  const { table, handshake } = placeFds(sockets);
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...opts.env,
    [INHERITED_ENV]: JSON.stringify(table),
    [UPGRADE_FD_ENV]: String(handshake),
    [UPGRADE_FROM_ENV]: String(process.pid),
  };
  // fds 3 and up that carry nothing stay closed in the child ('ignore' opens /dev/null only for 0-2).
  const stdio: (number | 'inherit' | 'ignore' | 'pipe')[] = ['inherit', 'inherit', 'inherit'];
  for (let fd = FIRST_FD; fd <= handshake || table.some((t) => t.fd >= fd); fd++) stdio.push('ignore');
  table.forEach((t, i) => (stdio[t.fd] = sockets[i].fd));
  stdio[handshake] = 'pipe';
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      cwd: process.cwd(),
      env,
      stdio,
    });
  } catch (err) {
    const e = upgradeError(undefined, `could not be spawned (${(err as Error).message})`, { cause: err });
    return { pid: 0, ready: Promise.reject(e), abort: () => {} };
  }
  const pid = child.pid ?? 0;
  const channel = child.stdio[handshake] as Readable;
  let reason: string | undefined;
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  let resolveReady!: () => void;
  let rejectReady!: (err: Error) => void;
  const ready = new Promise<void>((res, rej) => ((resolveReady = res), (rejectReady = rej)));
  ready.catch(() => {});

  const settle = (err?: Error): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    channel.destroy();
    if (err) rejectReady(err);
    else {
      // Nothing of ours may keep it tied to us now: it is the primary.
      child.unref();
      resolveReady();
    }
  };
  const abort = (why: string): void => {
    if (settled) return;
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
    settle(upgradeError(pid, why, { reason }));
  };

  let buf = '';
  channel.setEncoding('utf8');
  channel.on('data', (chunk: string) => {
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    const line = buf.slice(0, nl);
    if (line === 'ready') return settle();
    reason = line.replace(/^failed /, '');
    // It exits by itself; the exit settles. If it does not, it is killed.
    clearTimeout(timer);
    timer = setTimeout(() => abort(`failed to start (${reason}) and did not exit`), FAILED_EXIT_GRACE_MS);
  });
  channel.on('error', () => {});
  child.on('error', (err) => {
    if (child.pid === undefined) settle(upgradeError(undefined, `could not be spawned (${err.message})`, { cause: err }));
  });
  // 'close', not 'exit': it comes after the handshake socket has been read to its end, so a
  // "failed ..." line written just before the exit is never missed.
  child.once('close', (code, signal) => {
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    settle(upgradeError(pid, `${how} before it was ready${reason ? `: ${reason}` : ''}`, { exitCode: code, signal, reason }));
  });
  timer = setTimeout(() => abort(`was not ready within ${opts.timeout} ms (upgradeTimeout) and was killed`), opts.timeout);
  return { pid, ready, abort };
}
