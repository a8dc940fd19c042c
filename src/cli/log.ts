/**
 * The CLI's log on stderr (stdout belongs to the app's workers, which inherit it):
 * `text` is one readable line per event, `json` one JSON object per line for log shippers.
 * `pid` is always the primary's, as in pino; worker events name theirs `workerPid`.
 */
import type { LogFormat } from './args';

export type Fields = Record<string, unknown>;

export interface Logger {
  /** `event` names the line for machines; `text` is what a person reads. */
  info(event: string, fields: Fields, text: string): void;
  error(event: string, fields: Fields, text: string): void;
}

export function createLogger(format: LogFormat, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const line = (level: string, event: string, fields: Fields, text: string): void => {
    if (format === 'json') {
      write(JSON.stringify({ time: new Date().toISOString(), level, event, pid: process.pid, ...fields, msg: text }) + '\n');
    } else {
      write(`herdless[${process.pid}]: ${level === 'error' ? 'error: ' : ''}${text}\n`);
    }
  };
  return {
    info: (event, fields, text) => line('info', event, fields, text),
    error: (event, fields, text) => line('error', event, fields, text),
  };
}

/** "CODE: message" for an error, the form every CLI failure is reported in. */
export function describeError(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return typeof e?.code === 'string' ? `${e.code}: ${message}` : message;
}
