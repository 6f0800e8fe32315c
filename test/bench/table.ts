/** Plain-text tables for the benchmark report. */

/**
 * Formats `rows` under `headers` as aligned columns. A row with fewer cells than headers is printed as a note
 * line (its cells joined) without affecting the column widths.
 */
export function formatTable(headers: string[], rows: string[][]): string {
  const full = rows.filter((r) => r.length === headers.length);
  const widths = headers.map((h, i) => Math.max(h.length, ...full.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => {
        const w = widths[i] ?? c.length;
        // Numbers right-aligned, text left-aligned.
        return /^[-+]?[\d.,]+( [a-zµ%/]+)?$/i.test(c) ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of rows) out.push(r.length === headers.length ? line(r) : `  ${r.filter((c) => c !== '').join(' ')}`);
  return out.join('\n');
}
