/**
 * The pool's secret for route: 'client-ip' (16 random bytes): it keys the client-address hash
 * (native/primary/route-hash.h), so that nobody can compute offline which worker an address
 * lands on. One per pool, chosen at start; a reload keeps it (same primary); an upgrade hands
 * it to the new primary in HERDLESS_ROUTE_SECRET (hex), which is read once and removed from
 * the environment at once, so that workers (which run as the unprivileged user) never see it.
 * The variable is visible in the new primary's /proc/PID/environ to its own user and root
 * only, who can read its memory anyway.
 */
import { randomBytes } from 'node:crypto';

export const ROUTE_SECRET_ENV = 'HERDLESS_ROUTE_SECRET';

let inherited: Buffer | undefined;
let loaded = false;

/** Removes the variable from the environment (once), keeping its value for takeRouteSecret(). */
export function loadRouteSecret(env: NodeJS.ProcessEnv = process.env): void {
  if (loaded) return;
  loaded = true;
  const hex = env[ROUTE_SECRET_ENV];
  delete env[ROUTE_SECRET_ENV];
  if (hex !== undefined && /^[0-9a-f]{32}$/i.test(hex)) inherited = Buffer.from(hex, 'hex');
}

/** The secret for a new pool: the one an upgrade handed over (first pool only), else a fresh one. */
export function takeRouteSecret(): Buffer {
  loadRouteSecret();
  const secret = inherited ?? randomBytes(16);
  inherited = undefined;
  return secret;
}
