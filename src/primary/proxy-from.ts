/**
 * proxyFrom: which peers may name a client in their PROXY header. The accept thread compares
 * each connection's own peer address (accept4's) with these rules at accept time: a trusted
 * peer's header sets the client address (and the client-ip route); anyone else's header is
 * still required and read, then ignored (stats: proxy.untrusted). '*' trusts every peer.
 * Default: loopback only (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) and peers on unix sockets
 * ('unix': whoever can open the socket file is on this machine).
 */
import * as net from 'node:net';
import { invalidOption } from '../shared/errors';

export const DEFAULT_PROXY_FROM = ['127.0.0.0/8', '::1', '::ffff:127.0.0.0/104', 'unix'];

/** One trusted range. family 0: peers on unix sockets (addr, prefix unused). */
export interface TrustRule {
  family: 0 | 4 | 6;
  prefix: number;
  addr: Buffer;
}

/** null: every peer is trusted ('*'). */
export type ProxyTrust = TrustRule[] | null;

function v6Bytes(text: string): Buffer {
  // Expand "::" and a trailing dotted IPv4 part into 16 bytes.
  let head = text;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    for (const p of dotted[1].split('.')) tail.push(Number(p));
    head = text.slice(0, -dotted[1].length) + '0:0';
  }
  const [l, r = ''] = head.split('::');
  const left = l ? l.split(':') : [];
  const right = r ? r.split(':') : [];
  const groups = head.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  if (dotted) Buffer.from(tail).copy(b, 12);
  return b;
}

function parseRule(entry: string, option: string): TrustRule {
  if (entry === 'unix') return UNIX_RULE();
  const slash = entry.indexOf('/');
  const host = slash < 0 ? entry : entry.slice(0, slash);
  const kind = net.isIP(host);
  if (kind === 0) throw invalidOption(option, `"${entry}" is not an IPv4 or IPv6 address, a CIDR range (10.0.0.0/8, fd00::/8), "unix" or "*"`);
  const bits = kind === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = entry.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) throw invalidOption(option, `"${entry}": the prefix length must be 0 to ${bits}`);
    prefix = Number(p);
  }
  return rangeRule(kind === 4 ? 4 : 6, host, prefix);
}

const UNIX_RULE = (): TrustRule => ({ family: 0, prefix: 0, addr: Buffer.alloc(16) });

/** A checked address of `kind` (4 or 6) and its prefix length -> the rule. */
function rangeRule(kind: 4 | 6, host: string, prefix: number): TrustRule {
  const addr = Buffer.alloc(16);
  if (kind === 4) Buffer.from(host.split('.').map(Number)).copy(addr);
  else v6Bytes(host).copy(addr);
  // An IPv4-mapped range (::ffff:a.b.c.d/n, n >= 96) is the IPv4 range it names: the accept
  // thread compares a mapped peer (a dual-stack listener's IPv4 client) as IPv4.
  if (kind === 6 && prefix >= 96 && addr.subarray(0, 12).equals(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255]))) {
    return { family: 4, prefix: prefix - 96, addr: Buffer.concat([addr.subarray(12), Buffer.alloc(12)]) };
  }
  return { family: kind, prefix, addr };
}

/** DEFAULT_PROXY_FROM's rules, built without net.isIP: the first IPv6 check compiles Node's
 *  IPv6 pattern (~6 ms here), and every start-up without proxyProtocol would pay it. */
function defaultRules(): TrustRule[] {
  return [rangeRule(4, '127.0.0.0', 8), rangeRule(6, '::1', 128), rangeRule(6, '::ffff:127.0.0.0', 104), UNIX_RULE()];
}

/** proxyFrom as given (a string, comma-separated or not, or an array of strings) -> rules. */
export function normalizeProxyFrom(value: unknown, option = 'proxyFrom'): ProxyTrust {
  if (value === undefined) return defaultRules();
  const list = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((e) => typeof e === 'string')) {
    throw invalidOption(option, `expected addresses or CIDR ranges (a string or an array of strings, "*" for every peer), got ${JSON.stringify(value)}`);
  }
  const entries = list.map((e) => e.trim());
  if (entries.includes('*')) {
    if (entries.length > 1) throw invalidOption(option, '"*" trusts every peer: give it alone');
    return null;
  }
  if (entries.some((e) => e === '')) throw invalidOption(option, 'an empty entry');
  return entries.map((e) => parseRule(e, option));
}

/** The rules as the addon reads them: 18 bytes each, { family, prefix, addr[16] }. */
export function encodeProxyTrust(trust: ProxyTrust): Buffer | undefined {
  if (trust === null) return undefined;
  const out = Buffer.alloc(trust.length * 18);
  trust.forEach((r, i) => {
    out[i * 18] = r.family;
    out[i * 18 + 1] = r.prefix;
    r.addr.copy(out, i * 18 + 2);
  });
  return out;
}
