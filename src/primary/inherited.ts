/**
 * The new primary's side of an upgrade (see src/upgrade.ts for the old one's). The old
 * primary passes its listening sockets as fds 3.. and describes them in the environment:
 *
 *   HERDLESS_INHERITED_FDS  JSON [{ "fd": 3, "key": "tcp 127.0.0.1:8080" }, ...]: each fd and
 *                           the listen entry it serves, as listenKey() spells that entry
 *   HERDLESS_UPGRADE_FD     the fd of a socket to the old primary: "ready\n" once `min`
 *                           workers are ready, or "failed CODE: message\n"
 *   HERDLESS_UPGRADE_FROM   the old primary's pid
 *
 * Entries are matched by the listen entry as written (host and port, path), not by the
 * address bound: `port: 0` adopts the old primary's port instead of picking another one.
 * A `{ fd: N }` listener ("fd N") arrives at fd N itself, so the same listen option works.
 * The variables are read once and removed, so workers and a later upgrade never see them.
 */
import * as fs from 'node:fs';
import type { Addon } from '../shared/binding';
import type { NormalizedListen } from './options';

export const INHERITED_ENV = 'HERDLESS_INHERITED_FDS';
export const UPGRADE_FD_ENV = 'HERDLESS_UPGRADE_FD';
export const UPGRADE_FROM_ENV = 'HERDLESS_UPGRADE_FROM';

export interface InheritedSocket {
  fd: number;
  key: string;
}

/** How an upgrade names a listen entry on both sides. */
export function listenKey(l: NormalizedListen): string {
  if (l.kind === 'tcp') return `tcp ${l.host ?? '*'}:${l.port}`;
  if (l.kind === 'unix') return `unix ${l.path}`;
  return `fd ${l.fd}`;
}

export function metricsKey(m: { port: number; host?: string }): string {
  return `metrics ${m.host ?? '*'}:${m.port}`;
}

let table: InheritedSocket[] | undefined;
let deferred = false;
let handshakeFd: number | undefined;
let upgradeFrom: number | undefined;

/**
 * Read the variables once. Each fd is swapped for a close-on-exec duplicate at once: fds
 * past 15 are not close-on-exec (see sealInherited in src/cli/binds.ts), and a worker must
 * never inherit a listener or the handshake socket.
 */
function load(addon: Addon, env: NodeJS.ProcessEnv = process.env): InheritedSocket[] {
  if (table) return table;
  const raw = env[INHERITED_ENV];
  const hs = env[UPGRADE_FD_ENV];
  const from = env[UPGRADE_FROM_ENV];
  delete env[INHERITED_ENV];
  delete env[UPGRADE_FD_ENV];
  delete env[UPGRADE_FROM_ENV];
  table = [];
  if (from !== undefined && /^\d+$/.test(from)) upgradeFrom = Number(from);
  if (hs !== undefined && /^\d+$/.test(hs)) handshakeFd = seal(addon, Number(hs));
  if (raw === undefined) return table;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = [];
  }
  for (const e of Array.isArray(parsed) ? parsed : []) {
    if (!e || !Number.isInteger(e.fd) || typeof e.key !== 'string') continue;
    // A { fd: N } listener stays at N, where the same listen option finds it; close-on-exec now.
    const fd = e.key.startsWith('fd ') ? closeOnExec(addon, e.fd) : seal(addon, e.fd);
    if (fd !== undefined) table.push({ fd, key: e.key });
  }
  return table;
}

function closeOnExec(addon: Addon, fd: number): number | undefined {
  try {
    addon.closeFd(addon.adoptFd(fd)); // adoptFd marks the original close-on-exec too
    return fd;
  } catch {
    return undefined;
  }
}

function seal(addon: Addon, fd: number): number | undefined {
  try {
    const dup = addon.adoptFd(fd);
    fs.closeSync(fd);
    return dup;
  } catch {
    return undefined; // not open: nothing was inherited there
  }
}

/** The inherited fd for a listen (or metrics) key, now ours to use; once per fd. */
export function takeInherited(addon: Addon, key: string): number | undefined {
  const list = load(addon);
  const i = list.findIndex((e) => e.key === key);
  if (i < 0) return undefined;
  return list.splice(i, 1)[0].fd;
}

/** Every inherited fd whose key starts with `prefix` (the CLI's fd:// and systemd sockets). */
export function takeInheritedPrefix(addon: Addon, prefix: string): number[] {
  const list = load(addon);
  const taken = list.filter((e) => e.key.startsWith(prefix));
  table = list.filter((e) => !e.key.startsWith(prefix));
  return taken.map((e) => e.fd);
}

/** Close the listeners no listen entry claimed (the new command line no longer listens there). */
export function closeUnclaimed(addon: Addon): string[] {
  const isListener = (e: InheritedSocket) => e.key.startsWith('tcp ') || e.key.startsWith('unix ');
  const left = load(addon).filter(isListener);
  table = load(addon).filter((e) => !isListener(e));
  for (const e of left) addon.closeFd(e.fd);
  return left.map((e) => e.key);
}

/** The pid this process takes over from, when it was started by an upgrade. */
export function upgradedFrom(addon: Addon): number | undefined {
  load(addon);
  return upgradeFrom;
}

/**
 * The CLI answers "ready" itself, once its metrics server is up and systemd has heard
 * MAINPID=: the old primary drains as soon as it reads the answer.
 */
export function deferUpgradeAnswer(): void {
  deferred = true;
}

/** Dispatcher.start's answer, unless the caller deferred it. */
export function answerUpgradeOnStart(addon: Addon, result: Parameters<typeof answerUpgrade>[1]): void {
  if (!deferred || !result.ready) answerUpgrade(addon, result);
}

/** Tell the old primary how the start went (once); a no-op outside an upgrade. */
export function answerUpgrade(addon: Addon, result: { ready: true } | { ready: false; error: unknown }): void {
  load(addon);
  const fd = handshakeFd;
  if (fd === undefined) return;
  handshakeFd = undefined;
  let line = 'ready\n';
  if (!result.ready) {
    const e = result.error as { code?: unknown; message?: unknown };
    const text = typeof e?.message === 'string' ? e.message : String(result.error);
    line = `failed ${typeof e?.code === 'string' ? `${e.code}: ` : ''}${text.replace(/\n/g, ' ').slice(0, 4000)}\n`;
  }
  try {
    fs.writeSync(fd, line);
  } catch {
    // The old primary is gone (it timed out, or was killed): nobody to tell.
  }
  addon.closeFd(fd);
}
