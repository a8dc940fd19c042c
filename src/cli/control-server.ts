/**
 * The CLI's control socket: the commands take the same paths as the signals (controls from
 * signals.ts), so `herdless stop` ends the process as SIGTERM does, logged the same way.
 */
import type { Addon } from '../shared/binding';
import type { Dispatcher } from '../primary/dispatcher';
import { ControlServer } from '../primary/control/server';
import { reloadWithSummary, upgradeWhenServing, type ControlActions } from '../primary/control/actions';
import type { StatusInfo } from '../primary/control/status';
import type { Controls } from './signals';

export interface CliControl {
  server: ControlServer;
  /** Called just before the process exits: answers pending `stop` requests first. */
  beforeExit(): Promise<void>;
}

export async function startCliControl(
  addon: Addon,
  d: Dispatcher,
  controls: Controls,
  opts: { path: string | undefined; info: StatusInfo & { mode: string }; takeOverFrom: number | undefined },
): Promise<CliControl> {
  const stops: (() => void)[] = [];
  const actions: ControlActions = {
    scale: (spec) => controls.resize(typeof spec === 'number' ? { to: spec } : spec, 'herdless scale'),
    reload: () => reloadWithSummary(d, () => controls.reload('herdless reload')),
    upgrade: () => upgradeWhenServing(d, () => controls.upgrade('herdless upgrade')),
    stop(timeoutMs, stopping) {
      const began = Date.now();
      if (controls.stopping) return Promise.reject(Object.assign(new Error('herdless is already stopping'), { code: 'ERR_HERDLESS_CLOSED' }));
      controls.stop('herdless stop', 0, timeoutMs);
      stopping();
      return new Promise((resolve) => stops.push(() => resolve({ seconds: (Date.now() - began) / 1000 })));
    },
  };
  const server = await ControlServer.start(addon, d, { ...opts, actions });
  return {
    server,
    async beforeExit() {
      server.close();
      if (stops.length === 0) return;
      for (const done of stops.splice(0)) done();
      // The answers are written on the next turns; then the process may go.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    },
  };
}
