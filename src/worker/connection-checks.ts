/**
 * Node's http server checks headersTimeout/requestTimeout on a timer that runs from
 * 'listening' until close, connections or not (main.ts lowers its period to 1 s): an idle
 * worker would wake every second, and with it V8's helper threads. The check only ever looks
 * at open connections, so here it runs only while the worker holds some: the timer is taken
 * from the server once it listens, and re-armed (with Node's own callback and period) when
 * the first connection arrives, cleared when the last one closes. A connection's deadlines
 * are then checked within one period, as before.
 *
 * The timer lives in a symbol-keyed slot that Node's close() clears; a new timer goes back
 * into the same slot, so server.close() still stops it. Servers without that slot (http2,
 * net, a Node that changed it) keep whatever they have: nothing here is required.
 */
import type * as net from 'node:net';

const SLOT = 'http.server.connectionsCheckingInterval';

interface NodeTimeout {
  _onTimeout?: () => void;
  _repeat?: number | null;
}

export class ConnectionChecks {
  private readonly slot: symbol | undefined;
  private readonly check: (() => void) | undefined;
  private readonly periodMs: number = 0;
  private armed = false;

  constructor(private readonly server: net.Server) {
    const s = server as unknown as Record<symbol, unknown>;
    const slot = Object.getOwnPropertySymbols(server).find((k) => k.description === SLOT);
    const timer = slot === undefined ? undefined : (s[slot] as NodeTimeout | undefined);
    if (slot === undefined || typeof timer?._onTimeout !== 'function' || !(Number(timer._repeat) > 0)) return;
    this.slot = slot;
    this.check = timer._onTimeout;
    this.periodMs = Number(timer._repeat);
    clearInterval(timer as unknown as NodeJS.Timeout);
    s[slot] = undefined;
  }

  /** The worker holds `open` connections now. */
  update(open: number): void {
    if (this.slot === undefined || this.check === undefined) return;
    const s = this.server as unknown as Record<symbol, unknown>;
    if (open > 0 && !this.armed) {
      if (!this.server.listening) return; // closed: Node cleared it for good
      s[this.slot] = setInterval(this.check, this.periodMs).unref();
      this.armed = true;
    } else if (open === 0 && this.armed) {
      clearInterval(s[this.slot] as NodeJS.Timeout);
      s[this.slot] = undefined;
      this.armed = false;
    }
  }

  /** For tests and stats: is the timer running? */
  get running(): boolean {
    return this.armed;
  }
}
