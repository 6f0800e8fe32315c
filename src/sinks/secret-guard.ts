/**
 * Defensive check that an event never carries a device secret (DESIGN.md §4, "Events never carry device
 * secrets"). The watcher builds events without secrets; this guard turns a future mistake into a loud error
 * instead of a leak to every sink.
 */

/** Keys that must never appear in an event, at any depth (compared case-insensitively). */
const FORBIDDEN_KEYS = new Set(['devicesecret']);

/**
 * Returns the dotted path of the first forbidden key found in `value` (e.g. `devices[0].deviceSecret`), or
 * null when there is none. Cycles are tolerated.
 */
export function findSecretPath(value: unknown): string | null {
  const seen = new Set<object>();
  const walk = (node: unknown, path: string): string | null => {
    if (node === null || typeof node !== 'object') return null;
    if (seen.has(node)) return null;
    seen.add(node);
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i += 1) {
        const found = walk(node[i], `${path}[${i}]`);
        if (found !== null) return found;
      }
      return null;
    }
    for (const [key, child] of Object.entries(node as Record<string, unknown>)) {
      const childPath = path === '' ? key : `${path}.${key}`;
      if (FORBIDDEN_KEYS.has(key.toLowerCase())) return childPath;
      const found = walk(child, childPath);
      if (found !== null) return found;
    }
    return null;
  };
  return walk(value, '');
}
