/**
 * Where the CLI listens: --bind strings, and sockets handed over by systemd.
 *
 * `fd://N` is the inherited-fd convention of gunicorn, uWSGI and dockerd. systemd socket
 * activation (sd_listen_fds(3)) passes LISTEN_FDS sockets from fd 3, meant for us only if
 * LISTEN_PID is our pid; the variables are removed so that workers and anything they start
 * do not take the sockets for their own.
 */
import * as fs from 'node:fs';
import { loadAddon } from '../shared/binding';
import { invalidOption } from '../shared/errors';
import { takeInheritedPrefix, upgradedFrom } from '../primary/inherited';
import type { ListenOption } from '../primary/options';

const SD_LISTEN_FDS_START = 3;

function port(bind: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) throw invalidOption('--bind', `bad port in "${bind}"`);
  return Number(text);
}

/** host:port, [v6]:port, :port, unix:/path or fd://N. */
export function parseBind(bind: string): ListenOption {
  if (bind.startsWith('unix:')) {
    const path = bind.slice('unix:'.length);
    if (path === '') throw invalidOption('--bind', `missing path in "${bind}"`);
    return { path };
  }
  if (bind.startsWith('fd://')) {
    const n = bind.slice('fd://'.length);
    if (!/^\d+$/.test(n)) throw invalidOption('--bind', `expected fd://N with N a file descriptor number, got "${bind}"`);
    return { fd: Number(n) };
  }
  const v6 = /^\[([^\]]+)\]:(\w+)$/.exec(bind);
  if (v6) return { host: v6[1], port: port(bind, v6[2]) };
  const colon = bind.lastIndexOf(':');
  if (colon < 0 || bind.indexOf(':') !== colon) {
    throw invalidOption('--bind', `expected host:port, [v6]:port, :port, unix:/path or fd://N, got "${bind}"`);
  }
  const host = bind.slice(0, colon);
  return host === '' ? { port: port(bind, bind.slice(colon + 1)) } : { host, port: port(bind, bind.slice(colon + 1)) };
}

/** Sockets passed by systemd for this process, as { fd } listeners; consumes the variables. */
export function systemdListeners(env: NodeJS.ProcessEnv = process.env, pid = process.pid): ListenOption[] {
  const { LISTEN_PID, LISTEN_FDS } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (LISTEN_PID === undefined || LISTEN_FDS === undefined) return [];
  // Another process's sockets (the variables leaked through a fork): not ours to use.
  if (Number(LISTEN_PID) !== pid) return [];
  const count = Number(LISTEN_FDS);
  if (!Number.isInteger(count) || count < 0) throw invalidOption('LISTEN_FDS', `expected a count of sockets, got "${LISTEN_FDS}"`);
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i }));
}

/**
 * After an upgrade (SIGUSR2), the sockets the old primary was given (fd://N, LISTEN_FDS)
 * arrive as inherited fds keyed "fd ..." (src/inherited.ts), in the old one's order; the
 * fd numbers of its command line and LISTEN_FDS mean nothing in this process. Returns
 * undefined outside an upgrade.
 */
export function upgradeFdListeners(): ListenOption[] | undefined {
  const addon = loadAddon();
  if (upgradedFrom(addon) === undefined) return undefined;
  return takeInheritedPrefix(addon, 'fd ').map((fd) => ({ fd }));
}

/**
 * An inherited fd is not close-on-exec, so every worker would inherit the listening socket
 * and could accept on it. Node marks fds 0-15 close-on-exec at start-up
 * (uv_disable_stdio_inheritance) but stops at the first closed fd past 15, so fd://20 after a
 * gap would leak. Swap each for a close-on-exec duplicate and close the original.
 */
export function sealInherited(listen: ListenOption[]): ListenOption[] {
  return listen.map((l) => {
    if (!('fd' in l)) return l;
    const addon = loadAddon();
    let listening = false;
    try {
      listening = addon.socketInfo(l.fd).listening;
    } catch (err) {
      throw invalidOption('--bind', `fd ${l.fd} is not a usable socket (${(err as Error).message})`);
    }
    // Checked before closing anything: fd://1 must not take stdout with it.
    if (!listening) throw invalidOption('--bind', `fd ${l.fd} is not a listening socket`);
    const dup = addon.adoptFd(l.fd);
    fs.closeSync(l.fd);
    return { fd: dup };
  });
}
