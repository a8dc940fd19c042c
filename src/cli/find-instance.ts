/**
 * Which running herdless a control command talks to: --control PATH, else --pid N among the
 * sockets in the control directory, else the only one there. Several: an error naming them.
 */
import { controlDir, listControlSockets, type ControlHello } from '../shared/control';
import { ControlConnection, ControlError, probe } from '../shared/control-connection';

export interface Found {
  path: string;
  hello: ControlHello;
}

function refused(path: string, err: Error): ControlError {
  return new ControlError(
    'ERR_HERDLESS_CONTROL_REFUSED',
    `${path}: permission denied (${(err as { code?: string }).code}): the control socket belongs to another user; run the command as that user (or root)`,
  );
}

/** Every live instance in the control directory (stale sockets of killed primaries are skipped). */
export async function liveInstances(dir = controlDir()): Promise<Found[]> {
  const found: Found[] = [];
  await Promise.all(
    listControlSockets(dir).map(async (path) => {
      try {
        const hello = await probe(path);
        if (typeof hello === 'object') found.push({ path, hello });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'EACCES') throw refused(path, err as Error);
        if (code === 'ERR_HERDLESS_CONTROL_REFUSED') throw err;
        // Not answering (a hung primary, another program's socket): not one we can use.
      }
    }),
  );
  return found.sort((a, b) => a.path.localeCompare(b.path));
}

export async function findInstance(opts: { control?: string; pid?: number }): Promise<string> {
  if (opts.control !== undefined) return opts.control;
  const dir = controlDir();
  const all = await liveInstances(dir);
  if (opts.pid !== undefined) {
    const hit = all.find((f) => f.hello.pid === opts.pid);
    if (hit) return hit.path;
    throw new ControlError('ERR_HERDLESS_NO_INSTANCE', `no herdless with pid ${opts.pid} has a control socket in ${dir}${all.length ? ` (running: ${names(all)})` : ''}; give --control PATH`);
  }
  if (all.length === 1) return all[0].path;
  if (all.length === 0) {
    throw new ControlError('ERR_HERDLESS_NO_INSTANCE', `no running herdless found in ${dir}; start one, or give --control PATH (or --pid N)`);
  }
  throw new ControlError('ERR_HERDLESS_SEVERAL_INSTANCES', `${all.length} herdless instances are running: ${names(all)}; pick one with --pid N or --control PATH`);
}

function names(all: Found[]): string {
  return all.map((f) => `pid ${f.hello.pid} (${f.hello.app}, ${f.path})`).join(', ');
}

export async function connect(path: string): Promise<ControlConnection> {
  try {
    return await ControlConnection.connect(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'EACCES' || code === 'EPERM') throw refused(path, err as Error);
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      throw new ControlError('ERR_HERDLESS_NO_INSTANCE', `${path}: no herdless is listening there (${code})`);
    }
    throw err;
  }
}
