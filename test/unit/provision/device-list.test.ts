/** Device files (DESIGN.md §13): the three formats, Alibaba's name rule, duplicates, malformed rows. */

import { describe, expect, it } from 'vitest';

import { DeviceFileError, deviceFileFormat, deviceNameProblem, parseDeviceList, splitCsvRow } from '../../../src/provision/device-list.js';

describe('deviceNameProblem', () => {
  it.each(['abcd', 'a'.repeat(32), 'dev-1_2@x.y:z', 'A1B2'])('accepts %s', (name) => {
    expect(deviceNameProblem(name)).toBeNull();
  });
  it('refuses too short, too long and bad characters, saying why', () => {
    expect(deviceNameProblem('abc')).toBe('a DeviceName has 4 to 32 characters, this one has 3');
    expect(deviceNameProblem('a'.repeat(33))).toBe('a DeviceName has 4 to 32 characters, this one has 33');
    expect(deviceNameProblem('dev 1/é')).toBe('a DeviceName has only letters, digits and - _ @ . :, this one has " " "/" "é"');
  });
});

describe('splitCsvRow', () => {
  it('splits plain and quoted fields', () => {
    expect(splitCsvRow('a,b')).toEqual(['a', 'b']);
    expect(splitCsvRow('"a,1","say ""hi"""')).toEqual(['a,1', 'say "hi"']);
    expect(splitCsvRow('a,')).toEqual(['a', '']);
    expect(splitCsvRow('"open')).toBeNull();
  });
});

describe('parseDeviceList', () => {
  it('reads the console CSV with nicknames, a BOM and CRLF, rejecting invalid and duplicate names with lines', () => {
    const text = '\uFEFFDeviceName,Nickname\r\nlight-0001,Kitchen\r\nbad\r\n\r\nlight-0002,\r\nlight-0001,Again\r\n"light-0003","Hall, left"\r\n';
    expect(parseDeviceList(text, 'csv')).toEqual({
      devices: [
        { deviceName: 'light-0001', nickname: 'Kitchen', line: 2 },
        { deviceName: 'light-0002', nickname: null, line: 5 },
        { deviceName: 'light-0003', nickname: 'Hall, left', line: 7 },
      ],
      rejected: [
        { deviceName: 'bad', line: 3, code: 'invalid_name', reason: 'a DeviceName has 4 to 32 characters, this one has 3' },
        { deviceName: 'light-0001', line: 6, code: 'duplicate_name', reason: 'a duplicate of line 2: each name is submitted once' },
      ],
    });
  });

  it('rejects CSV rows with more columns than the header and unclosed quotes', () => {
    const list = parseDeviceList('devicename\nok-0001\nok-0002,extra\n"ok-0003\n', 'csv');
    expect(list.devices.map((d) => d.deviceName)).toEqual(['ok-0001']);
    expect(list.rejected).toEqual([
      { deviceName: 'ok-0002,extra', line: 3, code: 'malformed_row', reason: 'expected 1 column(s) as in the header, got 2' },
      { deviceName: '"ok-0003', line: 4, code: 'malformed_row', reason: 'a quote is not closed' },
    ]);
  });

  it('requires the CSV header and at least one device', () => {
    expect(() => parseDeviceList('light-0001\nlight-0002\n', 'csv')).toThrow(/expected the header row DeviceName or DeviceName,Nickname/);
    expect(() => parseDeviceList('DeviceName\n', 'csv')).toThrow('the file has a header row but no devices');
    expect(() => parseDeviceList('\n  \n', 'txt')).toThrow(DeviceFileError);
    expect(() => parseDeviceList('', 'jsonl')).toThrow('the file has no devices');
  });

  it('reads JSON lines and rejects rows that are not device objects', () => {
    const text = [
      '{"deviceName":"cam-0001","nickname":"Gate"}',
      '{"deviceName":"cam-0002"}',
      'not json',
      '[1]',
      '{"deviceName":7}',
      '{"deviceName":"cam-0003","colour":"red"}',
      '{"deviceName":"cam 4"}',
    ].join('\n');
    const list = parseDeviceList(text, 'jsonl');
    expect(list.devices).toEqual([
      { deviceName: 'cam-0001', nickname: 'Gate', line: 1 },
      { deviceName: 'cam-0002', nickname: null, line: 2 },
    ]);
    expect(list.rejected.map((r) => [r.line, r.code, r.reason])).toEqual([
      [3, 'malformed_row', 'expected a JSON object, got text that is not JSON'],
      [4, 'malformed_row', 'expected a JSON object'],
      [5, 'malformed_row', 'expected "deviceName" to be a string'],
      [6, 'malformed_row', 'unknown key "colour", expected deviceName and nickname'],
      [7, 'invalid_name', 'a DeviceName has only letters, digits and - _ @ . :, this one has " "'],
    ]);
  });

  it('reads text files one name a line, trimmed, blank lines skipped', () => {
    const list = parseDeviceList('  node-0001  \n\nnode-0002\nnode-0001\n', 'txt');
    expect(list.devices.map((d) => [d.deviceName, d.line])).toEqual([
      ['node-0001', 1],
      ['node-0002', 3],
    ]);
    expect(list.rejected).toEqual([{ deviceName: 'node-0001', line: 4, code: 'duplicate_name', reason: 'a duplicate of line 1: each name is submitted once' }]);
  });

  it('cuts long rejected names to 64 characters in the report', () => {
    const long = 'x'.repeat(100);
    expect(parseDeviceList(`${long}\n`, 'txt').rejected[0]?.deviceName).toBe(`${'x'.repeat(64)}…`);
  });
});

describe('deviceFileFormat', () => {
  it('knows csv, jsonl and txt by extension, case ignored', () => {
    expect(['a.csv', 'b.JSONL', 'c.txt', 'd.json', 'e'].map(deviceFileFormat)).toEqual(['csv', 'jsonl', 'txt', null, null]);
  });
});
