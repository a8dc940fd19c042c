/**
 * Node's http server checks headersTimeout/requestTimeout on a timer that runs from
 * 'listening' until close, connections or not (a worker's main.ts and the primary's metrics
 * server set its period to 1 s): an idle worker, or a primary serving /metrics, would wake
 * every second, and with it V8's helper threads. The check only ever looks at open
 * connections, so here it runs only while the server holds some: Node's timer is
 * taken from the server as soon as Node arms it (on 'listening', or at once if the server
 * already listens), and re-armed (with Node's own callback and period) when the first
 * connection arrives. A connection's deadlines are then checked within one period, as before.
 * The timer stops itself when it fires and finds no connection: stopping it as the last one
 * closes (and arming it again for the next) cost a timer insert and removal per connection,
 * a few µs of a worker's CPU per request at one client, Connection: close (3-9 µs in two
 * A/Bs, at the edge of their spread); this way the
 * timer stays armed while connections come and go, and an idle server wakes once more, within
 * one period, then sleeps. A server that never gets a connection never runs it.
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
  private slot: symbol | undefined;
  private check: (() => void) | undefined;
  private periodMs = 0;
  /** The timer we armed, while it runs: anything else in the slot is Node's. */
  private ours: NodeJS.Timeout | undefined;
  private open = 0;

  constructor(private readonly server: net.Server) {
    // Node arms its timer from a 'listening' listener added in the server's constructor, so
    // this one runs after it; a server that listens again (after close) arms a new one.
    server.on('listening', () => this.take());
    this.take();
  }

  /** Takes Node's own timer out of its slot, if one is running there. */
  private take(): void {
    const s = this.server as unknown as Record<symbol, unknown>;
    const slot = this.slot ?? Object.getOwnPropertySymbols(this.server).find((k) => k.description === SLOT);
    if (slot === undefined) return;
    const timer = s[slot] as NodeTimeout | undefined;
    if (timer === undefined || timer === (this.ours as unknown) || typeof timer._onTimeout !== 'function') return;
    if (!(Number(timer._repeat) > 0)) return;
    this.slot = slot;
    this.check = timer._onTimeout;
    this.periodMs = Number(timer._repeat);
    clearInterval(timer as unknown as NodeJS.Timeout);
    s[slot] = undefined;
    this.ours = undefined;
    this.update(this.open);
  }

  /** The server holds `open` connections now (the timer stops itself once it finds none). */
  update(open: number): void {
    this.open = open;
    if (this.slot === undefined || this.check === undefined) return;
    const s = this.server as unknown as Record<symbol, unknown>;
    if (this.ours !== undefined && s[this.slot] !== this.ours) this.ours = undefined; // close() cleared it
    if (open > 0 && this.ours === undefined) {
      if (!this.server.listening) return; // closed: Node cleared it for good
      this.ours = setInterval(() => this.tick(), this.periodMs).unref();
      s[this.slot] = this.ours;
    }
  }

  /** Node's check while connections are open; otherwise the timer stops until the next one. */
  private tick(): void {
    if (this.open > 0) {
      this.check!();
      return;
    }
    const s = this.server as unknown as Record<symbol, unknown>;
    clearInterval(this.ours);
    if (s[this.slot!] === this.ours) s[this.slot!] = undefined;
    this.ours = undefined;
  }

  /** For tests and stats: is the timer running? */
  get running(): boolean {
    return this.ours !== undefined;
  }
}
