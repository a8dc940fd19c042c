/**
 * --config <file>: the Dispatcher options (plus the CLI's own `metrics`, `log` and
 * `shutdownTimeout`) from a JSON file or a JS module (CommonJS or ESM; an exported function,
 * possibly async, is called for them). A relative `app` is relative to the config file, as it
 * is in most tools' config files, so the file works from any directory. An unknown name
 * fails the start, as in Dispatcher.start(), with the closest known one suggested.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { HerdlessError, invalidOption } from '../shared/errors';
import { OPTION_NAMES, rejectUnknownOptions, type DispatcherOptions } from '../primary/options';
import type { LogFormat } from './args';

export interface FileConfig extends Omit<Partial<DispatcherOptions>, 'metrics'> {
  metrics?: number | string | { port: number; host?: string };
  log?: LogFormat;
  shutdownTimeout?: number;
}

/** The CLI's own names a config file may hold besides the Dispatcher options. */
const CLI_NAMES: Record<Exclude<keyof FileConfig, keyof DispatcherOptions>, true> = { log: true, shutdownTimeout: true };
const KNOWN_NAMES = [...Object.keys(OPTION_NAMES), ...Object.keys(CLI_NAMES)];

async function readModule(file: string): Promise<unknown> {
  try {
    const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
    return mod.default ?? mod;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'ERR_UNKNOWN_FILE_EXTENSION' ? ' (this Node cannot load it directly: compile it to .js, or use .json)' : '';
    throw new HerdlessError('ERR_HERDLESS_INVALID_OPTION', `Invalid option "--config": ${file} failed to load${hint}: ${e.message}`, {
      option: '--config',
      cause: err,
    });
  }
}

export async function loadConfig(file: string): Promise<FileConfig> {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw invalidOption('--config', `no such file: ${abs}`);
  let value: unknown;
  if (abs.endsWith('.json')) {
    try {
      value = JSON.parse(fs.readFileSync(abs, 'utf8'));
    } catch (err) {
      throw invalidOption('--config', `${abs} is not valid JSON: ${(err as Error).message}`);
    }
  } else {
    value = await readModule(abs);
    if (typeof value === 'function') value = await (value as () => unknown)();
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidOption('--config', `${abs} must hold (or export) an object of options`);
  }
  const config = { ...(value as FileConfig) };
  rejectUnknownOptions(config, KNOWN_NAMES, '', ` in --config ${abs}`);
  if (typeof config.app === 'string') config.app = path.resolve(path.dirname(abs), config.app);
  return config;
}
