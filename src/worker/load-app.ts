/**
 * Turning whatever the app module exports into a server that is not listening:
 *   (req, res) => ...                   a request listener (Express, Koa's app.callback())
 *   http/https/http2 server             used as is
 *   () => server | listener (async ok)  a factory, awaited: its promise is the readiness
 * or, if the module called serve(server) while loading, that server.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { runAsMain } from './run-main';
import { state } from './state';

export class AppLoadError extends Error {}

function isServer(value: unknown): value is net.Server {
  return value instanceof net.Server || (typeof value === 'object' && value !== null && 'listen' in value && 'emit' in value);
}

function unwrapDefault(mod: unknown): unknown {
  let value = (mod as { default?: unknown }).default ?? mod;
  // A TypeScript or Babel CommonJS build puts `export default` at exports.default.
  if (value && typeof value === 'object' && (value as { __esModule?: boolean }).__esModule) {
    value = (value as { default?: unknown }).default;
  }
  return value;
}

async function toServer(value: unknown, allowFactory: boolean): Promise<net.Server> {
  if (isServer(value)) return value;
  if (typeof value === 'function') {
    // A request listener takes (req, res[, next]); a factory takes nothing (or the worker id).
    if (value.length >= 2) return http.createServer(value as http.RequestListener);
    if (allowFactory) return toServer(await (value as (id: number) => unknown)(state.id), false);
  }
  const what = value === undefined ? 'undefined' : typeof value === 'function' ? 'a function of one argument' : typeof value;
  throw new AppLoadError(
    `the app module must export a request listener (req, res) => {}, an http/https/http2 server that is not ` +
      `listening, or a factory returning one (got ${what}); or call serve(server) from 'herdless/worker'`,
  );
}

/**
 * The primary found `file`, but a worker running as another user (the `user` option) may
 * not be allowed to read it, which import() reports as "Cannot find module": say so.
 */
function unreadable(file: string): AppLoadError | undefined {
  try {
    fs.accessSync(file, fs.constants.R_OK);
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES') return undefined;
    return new AppLoadError(
      `cannot read the app module ${file} as uid ${process.getuid!()} (EACCES): the workers' user ("user" option) ` +
        'needs read access to it, search access to its directories, and read access to what it loads',
    );
  }
}

/**
 * Runs `file` as the main module with `args` as its arguments (run-main.ts).
 * appListen: the app's own listen() calls are served (dispatch mode). Then an app that
 * listened while loading resolves undefined (its servers are served; what it exports is its
 * own business), and, with mayListenLater (no address configured), one that exports nothing
 * servable: it may listen later (an async bootstrap); the caller waits for that.
 */
export async function loadApp(file: string, args: readonly string[], appListen = false, mayListenLater = false): Promise<net.Server | undefined> {
  let mod: unknown;
  try {
    mod = await runAsMain(file, args);
  } catch (err) {
    throw unreadable(file) ?? err;
  }
  if (appListen && state.served === undefined && state.listenCalls > 0) {
    await Promise.all(state.readiness);
    return undefined;
  }
  let server: net.Server;
  try {
    server = state.served ?? (await toServer(unwrapDefault(mod), true));
  } catch (err) {
    if (!(err instanceof AppLoadError)) throw err;
    // Listened meanwhile (a factory that listens), or may still (nothing configured to serve).
    if (!appListen || (state.listenCalls === 0 && !mayListenLater)) throw err;
    await Promise.all(state.readiness);
    return undefined;
  }
  if (appListen && state.listenCalls > 0 && state.served === undefined) return undefined; // a factory that listened
  if (server.listening) throw new AppLoadError('the app\'s server is already listening: export it without calling listen()');
  await Promise.all(state.readiness);
  return server;
}
