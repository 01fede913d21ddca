import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { AppError } from '../domain/errors.ts';

/**
 * Server-side request forgery guard. A webhook URL is the client telling this server where to send requests;
 * unless WEBHOOK_ALLOW_PRIVATE_TARGETS=true, every address its host resolves to (IPv4 and IPv6) must be a
 * public one. Checked at registration and again at every delivery (DNS can change), and the connection
 * is pinned to the checked addresses (see `guardedLookup`), so a rebinding between check and connect fails.
 */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata lives here)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
  ['2001:db8::', 32], // documentation
  ['64:ff9b::', 96], // NAT64 (embeds an IPv4 address)
  // IPv4-mapped addresses (::ffff:a.b.c.d) are checked as the IPv4 address they carry, in isPrivateAddress.
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) {
    const mapped = mappedIpv4(address);
    return mapped === null ? PRIVATE.check(address, 'ipv6') : PRIVATE.check(mapped, 'ipv4');
  }
  return true; // not an address at all: refuse
}

/** The IPv4 address inside an IPv4-mapped IPv6 address, dotted (`::ffff:127.0.0.1`) or hex (`::ffff:7f00:1`). */
function mappedIpv4(address: string): string | null {
  const dotted = /^(?:0{0,4}:){0,5}:?ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (dotted) return dotted[1]!;
  const hex = /^(?:0{0,4}:){0,5}:?ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (!hex) return null;
  const high = Number.parseInt(hex[1]!, 16);
  const low = Number.parseInt(hex[2]!, 16);
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves the URL's host and refuses it when any address is private (unless allowed). */
export async function resolveTarget(url: URL, allowPrivate: boolean): Promise<ResolvedAddress[]> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: ResolvedAddress[];
  if (isIP(host) !== 0) addresses = [{ address: host, family: isIP(host) }];
  else {
    try {
      addresses = await lookup(host, { all: true, verbatim: true });
    } catch {
      throw forbidden(`the host ${host} does not resolve`);
    }
  }
  if (addresses.length === 0) throw forbidden(`the host ${host} does not resolve`);
  if (!allowPrivate && addresses.some((a) => isPrivateAddress(a.address))) {
    throw forbidden('the URL resolves to a private, loopback or link-local address');
  }
  return addresses;
}

/** Parses and checks a webhook URL at registration: http(s), no credentials in it, a public host. */
export async function checkWebhookUrl(raw: string, allowPrivate: boolean): Promise<URL> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid('url is not a valid absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('url must be http or https');
  if (url.username !== '' || url.password !== '') throw invalid('url must not contain credentials');
  await resolveTarget(url, allowPrivate);
  return url;
}

function forbidden(message: string): AppError {
  return new AppError('WEBHOOK_TARGET_FORBIDDEN', message);
}

function invalid(message: string): AppError {
  return new AppError('VALIDATION_ERROR', message, [{ field: '/url', message }]);
}
