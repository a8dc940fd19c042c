/**
 * `user` and `group`: who workers run as. The primary (root) binds the listeners and keeps
 * running as root; each worker switches before the app loads (see worker-handle.ts and
 * worker/main.ts). Names are resolved here, once, at start: a typo fails the start, not
 * every worker.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { invalidOption } from '../shared/errors';

export interface Credentials {
  uid: number;
  gid: number;
  /** The user's name, when it has an entry in the user database: its groups come from initgroups(3). */
  user: string | undefined;
  home: string | undefined;
  /** Supplementary groups: the user's own (initgroups), or only `gid` (just `group` given, or a uid without an entry). */
  initGroups: boolean;
}

/**
 * One entry of the passwd or group database, by name or numeric id, as its ':' fields.
 * getent(1) asks NSS (LDAP, sssd, systemd-userdb users exist too); without getent the
 * files in /etc are read.
 */
function lookup(db: 'passwd' | 'group', key: string): string[] | undefined {
  const r = spawnSync('getent', [db, key], { encoding: 'utf8', timeout: 5000 });
  if (!r.error) return r.status === 0 ? r.stdout.split('\n')[0].split(':') : undefined;
  let text: string;
  try {
    text = fs.readFileSync(`/etc/${db}`, 'utf8');
  } catch {
    return undefined;
  }
  const numeric = /^\d+$/.test(key);
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length >= 3 && (fields[0] === key || (numeric && fields[2] === key))) return fields;
  }
  return undefined;
}

function checkId(name: string, value: unknown): string {
  if (typeof value === 'string' && value !== '' && !value.includes(':')) return value;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 32 - 1) return String(value);
  throw invalidOption(name, `expected a ${name} name or a numeric id, got ${String(value)}`);
}

/** Resolve `user`/`group` to ids; undefined when neither is set or nothing would change. */
export function resolveCredentials(user: unknown, group: unknown): Credentials | undefined {
  if (user === undefined && group === undefined) return undefined;
  const euid = process.geteuid!();
  let uid = euid;
  let gid = process.getegid!();
  let name: string | undefined;
  let home: string | undefined;
  let initGroups = false;
  if (user !== undefined) {
    const key = checkId('user', user);
    const pw = lookup('passwd', key);
    if (pw) {
      [name, uid, gid, home, initGroups] = [pw[0], Number(pw[2]), Number(pw[3]), pw[5] || undefined, true];
    } else if (/^\d+$/.test(key)) {
      uid = Number(key);
      if (group === undefined) throw invalidOption('user', `uid ${uid} has no entry in the user database: give "group" too, or use a user that exists`);
    } else {
      throw invalidOption('user', `no user "${key}" in the user database (getent passwd ${key} finds nothing): create it, or give an existing name or a numeric uid`);
    }
  }
  if (group !== undefined) {
    const key = checkId('group', group);
    const gr = lookup('group', key);
    if (gr) gid = Number(gr[2]);
    else if (/^\d+$/.test(key)) gid = Number(key);
    else throw invalidOption('group', `no group "${key}" in the group database (getent group ${key} finds nothing): create it, or give an existing name or a numeric gid`);
  }
  if (euid !== 0) {
    // Only root may switch users (and set groups); asking for what we already are is no switch.
    if (uid === euid && gid === process.getegid!()) return undefined;
    throw invalidOption(
      user !== undefined ? 'user' : 'group',
      `workers can only switch to uid ${uid}, gid ${gid} when the primary runs as root (it runs as uid ${euid}): ` +
        'start herdless as root (it binds the listeners, then each worker switches), or leave out "user" and "group"',
    );
  }
  return { uid, gid, user: name, home, initGroups };
}
