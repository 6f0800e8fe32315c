import { describe, expect, it } from 'vitest';

import { signV1 } from '../../../src/alibaba/sign-v1.js';
import { signV3, v3Headers } from '../../../src/alibaba/sign-v3.js';

describe('known-answer vectors (reference §2.4, §2.5)', () => {
  it('(a) ECS DescribeRegions, V1 GET', () => {
    const params = {
      AccessKeyId: 'testid',
      Action: 'DescribeRegions',
      Format: 'XML',
      SignatureMethod: 'HMAC-SHA1',
      SignatureNonce: '3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf',
      SignatureVersion: '1.0',
      Timestamp: '2016-02-23T12:46:24Z',
      Version: '2014-05-26',
    };
    const out = signV1(params, 'GET', 'testsecret');
    expect(out.stringToSign).toBe(
      'GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26',
    );
    expect(out.signature).toBe('OLeaidS1JvxuMvnyHOwuJ+uX5qY=');
  });

  it('(b) IoT Pub example, V1 GET', () => {
    const params = {
      AccessKeyId: 'testid',
      Action: 'Pub',
      Format: 'XML',
      MessageContent: 'aGVsbG93b3JsZA=',
      ProductKey: '12345abcdeZ',
      Qos: '0',
      RegionId: 'cn-shanghai',
      ServiceCode: 'iot',
      SignatureMethod: 'HMAC-SHA1',
      SignatureNonce: '0715a395-aedf-4a41-bab7-746b43d38d88',
      SignatureVersion: '1.0',
      Timestamp: '2017-10-02T09:39:41Z',
      TopicFullName: '/productKey/testdevice/get',
      Version: '2017-04-20',
    };
    expect(signV1(params, 'GET', 'testsecret').signature).toBe('Y9eWn4nF8QPh3c4zAFkM/k/u7eA=');
  });

  it('V3 fixed-input check', () => {
    const headers = v3Headers({
      host: 'iot.cn-shanghai.aliyuncs.com',
      action: 'QueryBatchRegisterDeviceStatus',
      version: '2018-01-20',
      date: '2024-01-02T03:04:05Z',
      nonce: 'fixed-nonce-0001',
    });
    const out = signV3({
      method: 'POST',
      query: { ApplyId: '1295006', IotInstanceId: 'iot-cn-abc123', ProductKey: 'a1BwAGVxxxx' },
      headers,
      accessKeyId: 'testid',
      accessKeySecret: 'testsecret',
    });
    expect(out.signature).toBe('84d88162c45c2a1af82bf536b7ab5f8278458a4a8c0ca7b795980637634768f8');
    expect(out.authorization).toBe(
      `ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=${out.signature}`,
    );
  });
});

describe('known-answer vectors (c): this project\'s shape (reference §2.4 c)', () => {
  const params = {
    Action: 'QueryBatchRegisterDeviceStatus',
    Format: 'json',
    Version: '2018-01-20',
    Timestamp: '2024-01-02T03:04:05Z',
    SignatureNonce: 'fixed-nonce-0001',
    ApplyId: '1295006',
    ProductKey: 'a1BwAGVxxxx',
    IotInstanceId: 'iot-cn-abc123',
    RegionId: 'cn-shanghai',
    SignatureMethod: 'HMAC-SHA1',
    SignatureVersion: '1.0',
    AccessKeyId: 'testid',
  };

  it('POST, with the exact string to sign', () => {
    const out = signV1(params, 'POST', 'testsecret');
    expect(out.stringToSign).toBe(
      'POST&%2F&AccessKeyId%3Dtestid%26Action%3DQueryBatchRegisterDeviceStatus%26ApplyId%3D1295006%26Format%3Djson%26IotInstanceId%3Diot-cn-abc123%26ProductKey%3Da1BwAGVxxxx%26RegionId%3Dcn-shanghai%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3Dfixed-nonce-0001%26SignatureVersion%3D1.0%26Timestamp%3D2024-01-02T03%253A04%253A05Z%26Version%3D2018-01-20',
    );
    expect(out.signature).toBe('16kJG5JOv7VWqnUu+6LoAR6G4DM=');
  });

  it('GET (same params)', () => {
    expect(signV1(params, 'GET', 'testsecret').signature).toBe('R+vqseQzAeNcACKUHmmMT1mS5s0=');
  });

  it('special characters, GET', () => {
    expect(signV1({ A: 'a b+c*d~e/f:g', B: '中文', C: "!'()" }, 'GET', 'testsecret').signature).toBe(
      'SJEcT3OuOGbrNSH8FL0hQ6ZzESg=',
    );
  });
});
