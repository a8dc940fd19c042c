/**
 * The control socket: a Unix socket in a 0700 directory, itself 0600, and every connection's
 * peer checked with SO_PEERCRED (only this process's user, or root, gets an answer). The
 * protocol is in src/shared/control.ts. Nothing here runs unless a client connects.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Addon } from '../../shared/binding';
import { CONTROL_VERSION, controlDir, controlName, type ControlHello, type ControlRequest } from '../../shared/control';
import { probe } from '../../shared/control-connection';
import { HerdlessError } from '../../shared/errors';
import type { Dispatcher } from '../dispatcher';
import type { ControlActions } from './actions';
import { StatusBuilder, type StatusInfo } from './status';

export interface ControlServerOptions {
  /** Socket path, or undefined for the default (named after the app in controlDir()). */
  path: string | undefined;
  info: StatusInfo & { mode: string };
  actions: ControlActions;
  /** The pid of the primary this one upgrades: its socket is taken over, not avoided. */
  takeOverFrom?: number;
}

const MAX_LINE = 64 * 1024;
const MAX_NAMES = 100;

function controlError(message: string, extra?: Record<string, unknown>): HerdlessError {
  return new HerdlessError('ERR_HERDLESS_CONTROL', message, extra);
}

/**
 * The default directory is created 0700 and must be ours, not open to others. A directory
 * named by --control is the user's choice (their home, say): created 0700 if missing, left as
 * it is otherwise; the socket's own 0600 and SO_PEERCRED still hold there.
 */
function ensureDir(dir: string, strict: boolean): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!strict) return;
  const st = fs.lstatSync(dir);
  const uid = process.getuid!();
  if (!st.isDirectory()) throw controlError(`${dir} is not a directory; remove it or give --control a path elsewhere`);
  if (st.uid !== uid) throw controlError(`${dir} belongs to uid ${st.uid}, not to this user (${uid}); remove it or give --control a path elsewhere`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

function candidates(opts: ControlServerOptions): string[] {
  if (opts.path) return [path.resolve(opts.path)];
  const base = controlName(opts.info.app);
  return Array.from({ length: MAX_NAMES }, (_, i) => path.join(controlDir(), `${base}${i === 0 ? '' : `-${i + 1}`}.sock`));
}

/** link(2) fails if the name exists: of two primaries starting at once, one gets each name. */
function linkExclusive(from: string, to: string): boolean {
  try {
    fs.linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * Give the socket bound at `bound` its name: the first free one (app, app-2, ...), a stale
 * one's (a killed primary's), or the one of the primary this one upgrades (replaced at once).
 */
async function claimPath(opts: ControlServerOptions, files: string[], bound: string): Promise<string> {
  for (const file of files) {
    let found: Awaited<ReturnType<typeof probe>>;
    try {
      found = await probe(file);
    } catch (err) {
      throw controlError(`cannot use the control socket ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (found === 'stale') fs.rmSync(file, { force: true });
    if (found === 'none' || found === 'stale') {
      if (linkExclusive(bound, file)) {
        fs.unlinkSync(bound);
        return file;
      }
      if (opts.path) throw controlError(`the control socket ${file} was just taken by another process; give --control another path`);
      continue;
    }
    if (found.pid === opts.takeOverFrom) {
      fs.renameSync(bound, file);
      return file;
    }
    if (opts.path) throw controlError(`the control socket ${file} is in use by herdless pid ${found.pid} (${found.app}); give --control another path`, { pid: found.pid });
  }
  throw controlError(`${MAX_NAMES} control sockets named after ${opts.info.app} are in use in ${controlDir()}; give --control a path`);
}

export class ControlServer {
  private readonly connections = new Set<net.Socket>();
  private readonly statusBuilder: StatusBuilder;
  private ino = -1;
  private file = '';
  private closed = false;

  private constructor(
    private readonly addon: Addon,
    d: Dispatcher,
    private readonly opts: ControlServerOptions,
    private readonly server: net.Server,
  ) {
    this.statusBuilder = new StatusBuilder(d, opts.info);
  }

  static async start(addon: Addon, d: Dispatcher, opts: ControlServerOptions): Promise<ControlServer> {
    const files = candidates(opts);
    const dir = path.dirname(files[0]);
    ensureDir(dir, opts.path === undefined);
    // Bound under a name of its own, then linked (or, to take over from the primary this one
    // upgrades, renamed) into place: clients never see a half-made socket or a missing path,
    // and libuv, which unlinks the name it bound when the server closes, cannot remove a path
    // that has become another primary's. close() removes the path only if it is still ours.
    const bound = path.join(dir, `.${process.pid}.bind`);
    fs.rmSync(bound, { force: true });
    const server = net.createServer();
    const self = new ControlServer(addon, d, opts, server);
    server.on('connection', (s) => self.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // bind(2) happens within listen(): the umask makes the socket 0600 from its first moment.
      const umask = process.umask(0o177);
      try {
        server.listen(bound, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    }).catch((err) => {
      throw controlError(`cannot listen on a control socket in ${dir}: ${(err as Error).message}`, { cause: err });
    });
    try {
      fs.chmodSync(bound, 0o600);
      self.file = await claimPath(opts, files, bound);
      self.ino = fs.statSync(self.file).ino;
    } catch (err) {
      server.close();
      fs.rmSync(bound, { force: true });
      throw err;
    }
    // Serving the socket must not keep a stopping primary alive.
    server.unref();
    return self;
  }

  /** Where the socket is. */
  get path(): string {
    return this.file;
  }

  /** Stop listening and remove the socket file if it is still ours; open connections stay
   *  until they end (a stop request answers as the process exits). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    try {
      if (fs.statSync(this.file).ino === this.ino) fs.rmSync(this.file, { force: true });
    } catch {
      // already gone
    }
  }

  private accept(socket: net.Socket): void {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let uid: number;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new Error('no file descriptor');
      uid = this.addon.peerCredentials(fd).uid;
    } catch (err) {
      return this.refuse(socket, `cannot tell who connected (${(err as Error).message})`);
    }
    const own = process.getuid!();
    if (uid !== own && uid !== 0) {
      return this.refuse(socket, `uid ${uid} may not control this herdless (pid ${process.pid}), which runs as uid ${own}: only its own user and root may`);
    }
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setEncoding('utf8');
    let buffered = '';
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_LINE && !buffered.includes('\n')) return this.refuse(socket, 'request line too long');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim() !== '') void this.handle(socket, line);
      }
    });
  }

  private refuse(socket: net.Socket, message: string): void {
    socket.on('error', () => socket.destroy());
    socket.end(`${JSON.stringify({ v: CONTROL_VERSION, id: null, ok: false, error: { code: 'ERR_HERDLESS_CONTROL_REFUSED', message } })}\n`);
  }

  private send(socket: net.Socket, msg: Record<string, unknown>): void {
    if (!socket.destroyed) socket.write(`${JSON.stringify({ v: CONTROL_VERSION, ...msg })}\n`);
  }

  private async handle(socket: net.Socket, line: string): Promise<void> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line);
      if (typeof req !== 'object' || req === null || typeof req.id !== 'number' || typeof req.cmd !== 'string') throw new Error('expected { v, id, cmd }');
    } catch (err) {
      return this.send(socket, { id: null, ok: false, error: { code: 'ERR_HERDLESS_CONTROL', message: `bad request: ${(err as Error).message}` } });
    }
    const { id } = req;
    if (Math.floor(req.v) !== CONTROL_VERSION) {
      return this.send(socket, { id, ok: false, error: { code: 'ERR_HERDLESS_CONTROL', message: `protocol version ${req.v} is not spoken here (${CONTROL_VERSION}): use the herdless of the same version` } });
    }
    try {
      const result = await this.run(req, (event, extra) => this.send(socket, { id, event, ...extra }));
      this.send(socket, { id, ok: true, result });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      this.send(socket, { id, ok: false, error: { code: e.code ?? 'ERR_HERDLESS_CONTROL', message: e.message ?? String(err) } });
    }
  }

  private async run(req: ControlRequest, event: (name: string, extra?: Record<string, unknown>) => void): Promise<unknown> {
    const args = req.args ?? {};
    const { actions, info } = this.opts;
    switch (req.cmd) {
      case 'hello':
        return { v: CONTROL_VERSION, pid: process.pid, app: info.app, version: info.version, startedAt: info.startedAt } satisfies ControlHello;
      case 'status':
        // Health figures are asked for here, when someone looks, never by stats() itself.
        await this.statusBuilder.refresh();
        return this.statusBuilder.build();
      case 'scale': {
        if (typeof args.to === 'number') return actions.scale(args.to);
        if (typeof args.delta === 'number') return actions.scale({ delta: args.delta });
        throw new HerdlessError('ERR_HERDLESS_INVALID_OPTION', 'scale: expected { to: N } or { delta: k }');
      }
      case 'reload':
        return actions.reload();
      case 'upgrade':
        return actions.upgrade();
      case 'stop': {
        const timeout = typeof args.timeout === 'number' ? args.timeout : undefined;
        // The socket stays while the pool drains (status shows it); it goes with the process,
        // or with close() for an API user's Dispatcher.
        return actions.stop(timeout, () => event('stopping', { pid: process.pid, timeout }));
      }
      default:
        throw controlError(`unknown command "${String(req.cmd)}" (known: hello, status, scale, reload, upgrade, stop)`);
    }
  }
}
