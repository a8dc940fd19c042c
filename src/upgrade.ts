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
import { HerdlessError } from './errors';
import { INHERITED_ENV, UPGRADE_FD_ENV, UPGRADE_FROM_ENV, type InheritedSocket } from './inherited';

const FIRST_FD = 3;
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

export function startSuccessor(sockets: InheritedSocket[], opts: SuccessorOptions): Successor {
  const table = sockets.map((s, i) => ({ fd: FIRST_FD + i, key: s.key }));
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...opts.env,
    [INHERITED_ENV]: JSON.stringify(table),
    [UPGRADE_FD_ENV]: String(FIRST_FD + sockets.length),
    [UPGRADE_FROM_ENV]: String(process.pid),
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      cwd: process.cwd(),
      env,
      stdio: ['inherit', 'inherit', 'inherit', ...sockets.map((s) => s.fd), 'pipe'],
    });
  } catch (err) {
    const e = upgradeError(undefined, `could not be spawned (${(err as Error).message})`, { cause: err });
    return { pid: 0, ready: Promise.reject(e), abort: () => {} };
  }
  const pid = child.pid ?? 0;
  const channel = child.stdio[FIRST_FD + sockets.length] as Readable;
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
