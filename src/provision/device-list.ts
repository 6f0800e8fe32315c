/**
 * Device files of a provisioning job (DESIGN.md §13), parsed and validated locally before anything is
 * submitted. Pure: text in, names and rejections out (the bounded read lives in device-file-reader.ts).
 *
 * Formats:
 * - `.csv`: the console's template, a header row `DeviceName` or `DeviceName,Nickname` (case and surrounding
 *   spaces ignored, a UTF-8 BOM allowed), then one device a row; fields may be quoted as in RFC 4180.
 * - `.jsonl`: one JSON object a line, `{"deviceName": "…", "nickname": "…"}` (nickname optional).
 * - `.txt`: one name a line.
 * Blank lines are skipped in every format. Every row that does not yield a usable name is rejected with its
 * line number and reason; nothing is dropped silently.
 */

/** The formats a device file may have, chosen by its extension. */
export type DeviceFileFormat = 'csv' | 'jsonl' | 'txt';

/** Alibaba's DeviceName rule: 4 to 32 characters of letters, digits, `-`, `_`, `@`, `.`, `:` (reference §1.1). */
export const DEVICE_NAME_PATTERN = /^[A-Za-z0-9_@.:-]{4,32}$/;

/** One device of the job, in file order. */
export interface DeviceEntry {
  deviceName: string;
  nickname: string | null;
  /** 1-based line of the file the device came from. */
  line: number;
}

/** Why a name (or a row) was rejected. Local codes; names Alibaba rejects carry `alibaba` (see the report). */
export type RejectionCode = 'malformed_row' | 'invalid_name' | 'duplicate_name' | 'alibaba_refused';

/** A name (or a row without a usable name) that is not submitted, with the reason. */
export interface RejectedName {
  /** The name as written (for a malformed row: the row's text, cut to 64 characters), or null when there is none. */
  deviceName: string | null;
  line: number | null;
  code: RejectionCode;
  reason: string;
}

/** What a device file holds: the usable names in file order and every rejection. */
export interface DeviceList {
  devices: DeviceEntry[];
  rejected: RejectedName[];
}

/** A device file that cannot be used at all (unknown format, bad header, no rows). */
export class DeviceFileError extends Error {
  override name = 'DeviceFileError';
}

/** The format of `file` from its extension, or null when it is none of .csv, .jsonl, .txt. */
export function deviceFileFormat(file: string): DeviceFileFormat | null {
  const m = /\.(csv|jsonl|txt)$/i.exec(file);
  return m === null ? null : (m[1]!.toLowerCase() as DeviceFileFormat);
}

/** Why `name` breaks Alibaba's rule, or null when it follows it. */
export function deviceNameProblem(name: string): string | null {
  if (DEVICE_NAME_PATTERN.test(name)) return null;
  const length = [...name].length;
  if (length < 4 || length > 32) return `a DeviceName has 4 to 32 characters, this one has ${length}`;
  const bad = [...new Set([...name].filter((c) => !/[A-Za-z0-9_@.:-]/.test(c)))];
  return `a DeviceName has only letters, digits and - _ @ . :, this one has ${bad.map((c) => JSON.stringify(c)).join(' ')}`;
}

function excerpt(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

/** Splits one CSV row into fields (RFC 4180 quoting); null when a quote is not closed. */
export function splitCsvRow(row: string): string[] | null {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (row[i] === '"') {
      let value = '';
      i += 1;
      for (;;) {
        if (i >= row.length) return null;
        if (row[i] === '"') {
          if (row[i + 1] === '"') {
            value += '"';
            i += 2;
            continue;
          }
          i += 1;
          break;
        }
        value += row[i];
        i += 1;
      }
      // NOTE: text between a closing quote and the next comma is kept, as spreadsheets do.
      const end = row.indexOf(',', i);
      fields.push(value + (end === -1 ? row.slice(i) : row.slice(i, end)));
      if (end === -1) return fields;
      i = end + 1;
    } else {
      const end = row.indexOf(',', i);
      if (end === -1) {
        fields.push(row.slice(i));
        return fields;
      }
      fields.push(row.slice(i, end));
      i = end + 1;
    }
  }
}

interface Row {
  line: number;
  text: string;
}

function rowsOf(text: string): Row[] {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const rows: Row[] = [];
  const lines = body.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const raw = lines[i]!;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() !== '') rows.push({ line: i + 1, text: line });
  }
  return rows;
}

type Candidate = { ok: true; deviceName: string; nickname: string | null; line: number } | { ok: false; rejected: RejectedName };

function malformed(row: Row, reason: string): Candidate {
  return { ok: false, rejected: { deviceName: excerpt(row.text), line: row.line, code: 'malformed_row', reason } };
}

function csvCandidates(rows: Row[]): Candidate[] {
  const header = rows[0];
  if (header === undefined) return [];
  const columns = (splitCsvRow(header.text) ?? []).map((c) => c.trim().toLowerCase());
  const withNickname = columns.length === 2 && columns[1] === 'nickname';
  if (columns[0] !== 'devicename' || !(columns.length === 1 || withNickname)) {
    throw new DeviceFileError(
      `line ${header.line}: expected the header row DeviceName or DeviceName,Nickname (the console's template), got ${JSON.stringify(excerpt(header.text))}`,
    );
  }
  return rows.slice(1).map((row): Candidate => {
    const fields = splitCsvRow(row.text);
    if (fields === null) return malformed(row, 'a quote is not closed');
    if (fields.length > columns.length) return malformed(row, `expected ${columns.length} column(s) as in the header, got ${fields.length}`);
    const nickname = withNickname && fields[1] !== undefined && fields[1].trim() !== '' ? fields[1].trim() : null;
    return { ok: true, deviceName: fields[0]!.trim(), nickname, line: row.line };
  });
}

function jsonlCandidates(rows: Row[]): Candidate[] {
  return rows.map((row): Candidate => {
    let value: unknown;
    try {
      value = JSON.parse(row.text);
    } catch {
      return malformed(row, 'expected a JSON object, got text that is not JSON');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return malformed(row, 'expected a JSON object');
    const record = value as Record<string, unknown>;
    const unknown = Object.keys(record).filter((k) => k !== 'deviceName' && k !== 'nickname');
    if (unknown.length > 0) return malformed(row, `unknown key ${JSON.stringify(unknown[0])}, expected deviceName and nickname`);
    if (typeof record.deviceName !== 'string') return malformed(row, 'expected "deviceName" to be a string');
    if (record.nickname !== undefined && record.nickname !== null && typeof record.nickname !== 'string') {
      return malformed(row, 'expected "nickname" to be a string');
    }
    const nickname = typeof record.nickname === 'string' && record.nickname !== '' ? record.nickname : null;
    return { ok: true, deviceName: record.deviceName, nickname, line: row.line };
  });
}

function txtCandidates(rows: Row[]): Candidate[] {
  return rows.map((row): Candidate => ({ ok: true, deviceName: row.text.trim(), nickname: null, line: row.line }));
}

/**
 * Parses and validates a device file's text: every name against Alibaba's rule and against the names before
 * it (the first occurrence wins; later ones are rejected as duplicates, naming the first line).
 *
 * @throws DeviceFileError when the file has no rows at all, or a CSV file lacks its header.
 */
export function parseDeviceList(text: string, format: DeviceFileFormat): DeviceList {
  const rows = rowsOf(text);
  const candidates = format === 'csv' ? csvCandidates(rows) : format === 'jsonl' ? jsonlCandidates(rows) : txtCandidates(rows);
  if (candidates.length === 0) {
    throw new DeviceFileError(format === 'csv' && rows.length > 0 ? 'the file has a header row but no devices' : 'the file has no devices');
  }
  const devices: DeviceEntry[] = [];
  const rejected: RejectedName[] = [];
  const firstLine = new Map<string, number>();
  for (const candidate of candidates) {
    if (!candidate.ok) {
      rejected.push(candidate.rejected);
      continue;
    }
    const { deviceName, line } = candidate;
    const problem = deviceNameProblem(deviceName);
    if (problem !== null) {
      rejected.push({ deviceName: excerpt(deviceName), line, code: 'invalid_name', reason: problem });
      continue;
    }
    const first = firstLine.get(deviceName);
    if (first !== undefined) {
      rejected.push({ deviceName, line, code: 'duplicate_name', reason: `a duplicate of line ${first}: each name is submitted once` });
      continue;
    }
    firstLine.set(deviceName, line);
    devices.push({ deviceName, nickname: candidate.nickname, line });
  }
  return { devices, rejected };
}
