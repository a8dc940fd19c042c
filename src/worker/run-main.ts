/**
 * Runs the app file as `node app.js` would: as the process's main module. An app written
 * for `node`, `cluster` or pm2 checks `require.main === module` (CommonJS) or
 * `import.meta.url === pathToFileURL(process.argv[1]).href` (ESM) before it starts its
 * server, and reads its own flags from process.argv.slice(2).
 *
 * Node picks the ESM loader for `.mjs`, for `"type": "module"` packages and whenever a
 * `--import`/`--loader` flag is given. For that last case we keep CommonJS files on the
 * CommonJS loader instead: a public import() cannot mark a CommonJS module as the main one,
 * and both loaders honour the hooks `--import tsx` registers.
 */
import * as fs from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

type Loader = { _load(request: string, parent: null, isMain: boolean): unknown };

/** The nearest package.json's "type", as Node reads it for a file's format. */
function packageType(file: string): string | undefined {
  let dir = path.dirname(file);
  for (;;) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { type?: unknown };
      return typeof pkg.type === 'string' ? pkg.type : undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return undefined; // unreadable or not JSON: Node's default
    }
    const up = path.dirname(dir);
    if (up === dir || path.basename(dir) === 'node_modules') return undefined;
    dir = up;
  }
}

function isModuleFormat(file: string): boolean {
  if (/\.(mjs|mts)$/.test(file)) return true;
  if (/\.(cjs|cts)$/.test(file)) return false;
  return packageType(file) === 'module';
}

/** Makes `file` the process's main script with `args` as its own arguments; resolves to what it exports. */
export async function runAsMain(file: string, args: readonly string[]): Promise<unknown> {
  const main = path.resolve(file);
  process.argv = [process.argv[0], main, ...args];
  if (!isModuleFormat(main)) {
    try {
      return (Module as unknown as Loader)._load(main, null, true);
    } catch (err) {
      // A .js file Node itself would run as ESM (syntax detection, a loader's verdict).
      if ((err as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM' || !String((err as Error).message).includes(main)) throw err;
    }
  }
  return import(pathToFileURL(main).href);
}
