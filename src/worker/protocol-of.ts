/**
 * What a server's connections speak, for the primary's banner and stats (`listening on
 * https://...`). Judged by class, without loading a module the app did not load: http2's
 * servers by name, https's only for a server that does TLS (its app has loaded tls already).
 */
import * as http from 'node:http';
import type * as net from 'node:net';
import type { Protocol } from '../shared/protocol';

export function protocolOf(server: net.Server): Protocol {
  const name = server.constructor?.name;
  const secure = typeof (server as { setSecureContext?: unknown }).setSecureContext === 'function';
  if (!secure) return server instanceof http.Server || name === 'Http2Server' ? 'http' : 'tcp';
  if (name === 'Http2SecureServer') return 'https';
  const https = require('node:https') as typeof import('node:https'); // eslint-disable-line @typescript-eslint/no-require-imports
  return server instanceof https.Server ? 'https' : 'tls';
}
