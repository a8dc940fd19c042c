/**
 * onShutdown(fn): what an app runs when its worker stops taking connections (close database
 * pools, flush logs). main.ts starts them once, whatever the reason, and exits when they
 * have all settled and the connections are closed, or at the deadline. A hook that throws
 * or rejects is reported on stderr and does not stop the others, nor the exit.
 */
import type { ShutdownReason } from '../shared/protocol';
import { state } from './state';

export type ShutdownHook = (reason: ShutdownReason) => unknown;

const hooks: ShutdownHook[] = [];
let started: ShutdownReason | undefined;
let pending = 0;
let onSettled: (() => void) | undefined;

function run(fn: ShutdownHook, reason: ShutdownReason): void {
  const report = (err: unknown) => {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`herdless: worker ${state.id}: an onShutdown hook failed (${reason}): ${text}\n`);
  };
  let result: unknown;
  try {
    result = fn(reason);
  } catch (err) {
    report(err);
    return;
  }
  pending++;
  void Promise.resolve(result)
    .then(() => {}, report)
    .finally(() => {
      if (--pending === 0) onSettled?.();
    });
}

/** Register `fn`; once shutdown has begun it runs at once (and the exit waits for it too). */
export function addShutdownHook(fn: ShutdownHook): void {
  hooks.push(fn);
  if (started !== undefined) run(fn, started);
}

/** Run every hook, once (later calls change nothing); `settled` runs each time none is left pending. */
export function startShutdownHooks(reason: ShutdownReason, settled: () => void): void {
  if (started !== undefined) return;
  started = reason;
  onSettled = settled;
  for (const fn of [...hooks]) run(fn, reason); // those added meanwhile run from addShutdownHook()
}

/** Hooks that have neither resolved nor rejected yet. */
export function shutdownHooksPending(): number {
  return pending;
}
