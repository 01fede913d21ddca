import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { AppError } from '../domain/errors.ts';
import { sandboxWebhookAnswer } from '../domain/sandbox.ts';

/**
 * Server-side request forgery guard. A webhook URL is the client telling this server where to send requests;
 * unless WEBHOOK_ALLOW_PRIVATE_TARGETS=true, every address its host resolves to (IPv4 and IPv6) must be a
 * global unicast address. Checked at registration and again at every delivery (DNS can change), and the
 * connection is pinned to the checked addresses (see `guardedLookup`), so a rebinding between check and
 * connect fails.
 *
 * An allow-list, not a block-list: ipaddr.js classifies the address into its IANA special-purpose range and
 * only `unicast` (none of them) passes. So every IPv6 form that embeds an IPv4 address is refused whatever
 * it embeds (an IPv4-mapped `::ffff:a.b.c.d` is judged as its IPv4 address): IPv4-compatible (`::127.0.0.1`), SIIT (`::ffff:0:127.0.0.1`),
 * NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`) and Teredo (`2001::/32`), as are the 6to4
 * relay anycast `192.88.99.0/24`, carrier-grade NAT, benchmarking, documentation and reserved ranges.
 */
export function isPrivateAddress(address: string): boolean {
  if (!ipaddr.isValid(address) || isIP(address) === 0) return true; // not an address at all: refuse
  const parsed = ipaddr.parse(address);
  // `::ffff:a.b.c.d` is how a dual-stack socket names an IPv4 peer: judged as the IPv4 address it carries.
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    return (parsed as ipaddr.IPv6).toIPv4Address().range() !== 'unicast';
  }
  // IPv6 global unicast is 2000::/3 (RFC 4291); ipaddr.js calls the rest of the space `unicast` too, among it
  // the IPv4-compatible ::/96 (`::127.0.0.1`, which a URL parser rewrites to `::7f00:1`).
  if (parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_IPV6)) return true;
  return parsed.range() !== 'unicast';
}

const GLOBAL_UNICAST_IPV6 = ipaddr.parseCIDR('2000::/3');

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

/**
 * Parses and checks a webhook URL at registration: http(s), no credentials in it, a public host. In test mode
 * (`sandboxHosts`) the sandbox's reserved hosts pass without a lookup: nothing is ever sent to them.
 */
export async function checkWebhookUrl(
  raw: string,
  allowPrivate: boolean,
  sandboxHosts = false,
): Promise<URL> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid('url is not a valid absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('url must be http or https');
  if (url.username !== '' || url.password !== '') throw invalid('url must not contain credentials');
  if (sandboxHosts && sandboxWebhookAnswer(url) !== null) return url;
  await resolveTarget(url, allowPrivate);
  return url;
}

function forbidden(message: string): AppError {
  return new AppError('WEBHOOK_TARGET_FORBIDDEN', message);
}

function invalid(message: string): AppError {
  return new AppError('VALIDATION_ERROR', message, [{ field: '/url', message }]);
}
