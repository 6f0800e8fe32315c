/**
 * One definition of "this host never leaves the machine", used wherever plain http or a test address is
 * allowed: the API endpoint, the webhook URL and the config validation.
 */
import { isIP } from 'node:net';

/**
 * True for `localhost`, 127.0.0.0/8, `::1` (also written out in full) and IPv4-mapped `::ffff:127.x.y.z`.
 * Accepts a URL hostname (IPv6 in brackets) or a bare host.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = (hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname).toLowerCase();
  if (host === 'localhost') return true;
  const family = isIP(host);
  if (family === 4) return host.startsWith('127.');
  if (family === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(host);
  return false;
}
