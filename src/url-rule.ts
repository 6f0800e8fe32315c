/**
 * The one URL rule (issue #12) for every URL the daemon connects to: the API endpoint (`alibaba.endpoint`, a
 * batch's `endpoint`: origin only) and the webhook (`output.webhook.url`: a path and query allowed). `https:`
 * anywhere, `http:` only to a loopback host, never credentials in the URL. Used by the config schema and by the
 * adapters that connect (rpc-client.ts, webhook.ts), so the file and the code cannot disagree.
 */
import { isLoopbackHost } from './loopback.js';

/** Why a URL is refused. */
export type UrlProblemKind = 'not-url' | 'scheme' | 'insecure' | 'credentials' | 'not-origin';

export interface UrlProblem {
  kind: UrlProblemKind;
  /** One line for the operator, e.g. `credentials in the URL are not allowed`. */
  message: string;
}

/** The result of {@link checkUrl}: the parsed URL, or the problem. */
export type UrlCheck = { ok: true; url: URL } | ({ ok: false } & UrlProblem);

/** Checks `value` against the rule. `originOnly` refuses paths, queries and fragments (the API endpoint). */
export function checkUrl(value: string, options: { originOnly: boolean }): UrlCheck {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { ok: false, kind: 'not-url', message: 'not a URL' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return { ok: false, kind: 'scheme', message: `the scheme ${url.protocol} is not http: or https:` };
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return { ok: false, kind: 'insecure', message: 'http:// is allowed only for a loopback host (127.0.0.0/8, ::1, localhost); use https://' };
  }
  if (url.username !== '' || url.password !== '') return { ok: false, kind: 'credentials', message: 'credentials in the URL are not allowed' };
  if (options.originOnly && ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '')) {
    return { ok: false, kind: 'not-origin', message: 'a path, query or fragment is not allowed' };
  }
  return { ok: true, url };
}
