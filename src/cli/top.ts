/**
 * `herdless top`: the status table, asked for once a second over one connection. On a
 * terminal it redraws in place with plain ANSI (alternate screen, cursor home, erase to end of
 * line), so it works over ssh and in tmux; q or Ctrl-C quits. Not a terminal: one block of
 * lines per refresh, until interrupted or -n refreshes.
 */
import type { StatusResult } from '../shared/control';
import type { ControlConnection } from '../shared/control-connection';
import { renderStatus } from './status-view';

const REFRESH_MS = 1000;
const ESC = '\x1b[';

export async function runTop(conn: ControlConnection, opts: { iterations?: number }): Promise<number> {
  const out = process.stdout;
  const tty = out.isTTY === true;
  let quit: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (quit = resolve));
  let timer: NodeJS.Timeout | undefined;
  const stdin = process.stdin;
  const onKey = (key: Buffer) => {
    const k = key.toString();
    if (k === 'q' || k === 'Q' || k === '\x03') quit(0);
  };
  const onSignal = () => quit(0);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (tty) {
    out.write(`${ESC}?1049h${ESC}?25l`);
    if (stdin.isTTY) {
      stdin.setRawMode(true);
      stdin.resume();
      stdin.on('data', onKey);
    }
  }
  let count = 0;
  let code = 0;
  const draw = async (): Promise<void> => {
    let s: StatusResult;
    try {
      s = await conn.request<StatusResult>('status');
    } catch (err) {
      code = 3;
      if (tty) out.write(`${ESC}?25h${ESC}?1049l`);
      process.stderr.write(`herdless top: ${(err as Error).message}\n`);
      return quit(3);
    }
    const lines = renderStatus(s);
    count++;
    if (tty) {
      const width = out.columns || 200;
      const footer = `q quits; refreshed ${new Date().toLocaleTimeString()} every ${REFRESH_MS / 1000} s`;
      const screen = [...lines, '', footer].map((l) => `${l.slice(0, width)}${ESC}K`).join('\r\n');
      out.write(`${ESC}H${screen}${ESC}J`);
    } else {
      out.write(`--- ${new Date().toISOString()}\n${lines.join('\n')}\n`);
    }
    if (opts.iterations !== undefined && count >= opts.iterations) return quit(0);
    timer = setTimeout(() => void draw(), REFRESH_MS);
  };
  void draw();
  const result = await finished;
  clearTimeout(timer);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (tty) {
    if (stdin.isTTY) {
      stdin.off('data', onKey);
      stdin.setRawMode(false);
      stdin.pause();
    }
    if (code === 0) out.write(`${ESC}?25h${ESC}?1049l`);
  }
  return result;
}
