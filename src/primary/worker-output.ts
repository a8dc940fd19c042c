/**
 * A worker's stdout/stderr, passed on by the primary one whole line at a time, so that lines
 * of workers writing at once never interleave mid-line, and each says who wrote it:
 * 'prefix' as `[slot pid] line`, 'json' as one object per line (for log shippers).
 *
 * Every line of a chunk goes out in one write: on Linux, process.stdout/stderr write files
 * and pipes synchronously, and the primary is the only writer of its workers' lines.
 * A line longer than MAX_LINE is passed on in pieces of that size rather than held.
 */
import type { Readable } from 'node:stream';
import type { WorkerOutput } from './options';

const NEWLINE = 0x0a;
export const MAX_LINE = 1 << 20;

export interface OutputSource {
  id: number;
  slot: number;
  pid: number;
  stream: 'stdout' | 'stderr';
}

type Format = Exclude<WorkerOutput, 'inherit'>;

const guarded = new WeakSet<NodeJS.WritableStream>();

/**
 * The primary's stdout or stderr losing its reader (`herdless app.js | head`) must not end the
 * primary, and every worker with it, through an unhandled EPIPE 'error' (a worker writing
 * there itself would only have lost its own output): the lines are dropped instead.
 */
function survivePipeErrors(to: NodeJS.WritableStream): void {
  if (guarded.has(to)) return;
  guarded.add(to);
  to.on('error', () => {});
}

/** Copies `from` to `to` line by line in `format`, until `from` ends (then any last partial line, too). */
export function forwardLines(from: Readable, to: NodeJS.WritableStream, format: Format, source: OutputSource): void {
  survivePipeErrors(to);
  const prefix = Buffer.from(`[${source.slot} ${source.pid}] `);
  let partial: Buffer[] = [];
  let partialBytes = 0;
  const line = (parts: Buffer[], out: Buffer[]): void => {
    if (format === 'prefix') {
      out.push(prefix, ...parts);
      return;
    }
    let text = Buffer.concat(parts).toString('utf8');
    if (text.endsWith('\n')) text = text.slice(0, -1);
    const record = { time: new Date().toISOString(), level: 'info', event: 'worker-output', pid: process.pid, worker: source.id, slot: source.slot, workerPid: source.pid, stream: source.stream, msg: text };
    out.push(Buffer.from(JSON.stringify(record) + '\n'));
  };
  from.on('data', (chunk: Buffer) => {
    const out: Buffer[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, nl + 1);
      if (partialBytes > 0) {
        line([...partial, piece], out);
        partial = [];
        partialBytes = 0;
      } else {
        line([piece], out);
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      // Copied: a slice would keep the whole chunk alive.
      const rest = Buffer.from(chunk.subarray(start));
      partial.push(rest);
      partialBytes += rest.length;
      if (partialBytes >= MAX_LINE) {
        line([...partial, Buffer.from('\n')], out);
        partial = [];
        partialBytes = 0;
      }
    }
    if (out.length > 0) to.write(out.length === 1 ? out[0] : Buffer.concat(out));
  });
  from.on('end', () => {
    if (partialBytes === 0) return;
    const out: Buffer[] = [];
    line([...partial, Buffer.from('\n')], out);
    partial = [];
    partialBytes = 0;
    to.write(Buffer.concat(out));
  });
}
