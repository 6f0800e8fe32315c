/**
 * Small Markdown helpers for the tests that keep docs/operations.md honest: sections by heading, table rows split
 * into cells (GFM: `\|` is a literal pipe inside a cell), and fenced code blocks.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Reads a file of the repository as UTF-8. */
export function readRepoFile(relative: string): string {
  return readFileSync(path.join(ROOT, relative), 'utf8');
}

/** The text under the heading whose title is `title` (any level), up to the next heading of the same or a higher level. */
export function section(markdown: string, title: string): string {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => /^#{1,6} /.test(l) && l.replace(/^#+ /, '').trim() === title);
  if (start === -1) throw new Error(`no heading "${title}"`);
  const level = /^#+/.exec(lines[start]!)![0].length;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i += 1) {
    const m = /^(#{1,6}) /.exec(lines[i]!);
    if (m && m[1]!.length <= level) {
      end = i;
      break;
    }
  }
  return lines.slice(start + 1, end).join('\n');
}

/** The body rows of every table in `markdown`, each split into trimmed cells (header and delimiter rows dropped). */
export function tableRows(markdown: string): string[][] {
  const rows: string[][] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i]!;
    if (!line.startsWith('|')) continue;
    if (/^\|[\s:|-]+\|$/.test(line)) continue; // delimiter row
    const next = lines[i + 1] ?? '';
    if (/^\|[\s:|-]+\|$/.test(next)) continue; // header row
    rows.push(splitRow(line));
  }
  return rows;
}

function splitRow(line: string): string[] {
  const cells: string[] = [];
  let current = '';
  for (let i = 1; i < line.length; i += 1) {
    const ch = line[i]!;
    if (ch === '\\' && line[i + 1] === '|') {
      current += '|';
      i += 1;
    } else if (ch === '|') {
      cells.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  return cells;
}

/** The code spans of a cell: "`a`, `b`" → ["a", "b"]. */
export function codeSpans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}

/** The contents of the fenced code blocks with the given info string (e.g. `yaml`, `json`, `sh`). */
export function codeBlocks(markdown: string, info: string): string[] {
  const blocks: string[] = [];
  const re = new RegExp(`^( *)\`\`\`${info}\\n([\\s\\S]*?)^\\1\`\`\`$`, 'gm');
  for (const m of markdown.matchAll(re)) {
    const indent = m[1]!.length;
    blocks.push(
      m[2]!
        .split('\n')
        .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
        .join('\n'),
    );
  }
  return blocks;
}
