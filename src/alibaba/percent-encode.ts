/**
 * RFC 3986 percent-encoding exactly as Alibaba Cloud's RPC signatures require
 * (reference §2.3; alibabacloud.com/help/doc-detail/30563.htm): only `A-Z a-z 0-9 - _ . ~` stay as they are,
 * every other UTF-8 byte becomes `%XY` with upper-case hex. Space is `%20`, `*` is `%2A`, `~` stays.
 */
export function percentEncode(value: string): string {
  // NOTE: the common case (keys, ids, product keys) has nothing to escape: one regex test, no new string.
  if (UNRESERVED_ONLY.test(value)) return value;
  // encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) unescaped; escape the five RFC 3986 reserves too.
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const UNRESERVED_ONLY = /^[A-Za-z0-9\-_.~]*$/;

/** `k=v&k=v` of percent-encoded pairs, sorted by name in code-point order (the SDK's `Array.sort()`). */
export function canonicalQuery(params: Readonly<Record<string, string>>): string {
  // NOTE: one loop and one string instead of map() + join(): this runs on every request (issue #14).
  const keys = Object.keys(params).sort();
  let out = '';
  for (let i = 0; i < keys.length; i += 1) {
    const k = keys[i] as string;
    out += `${i === 0 ? '' : '&'}${percentEncode(k)}=${percentEncode(params[k] ?? '')}`;
  }
  return out;
}
