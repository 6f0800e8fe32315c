import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { parseJsonLossless, quoteIntegerFields } from '../../../src/alibaba/lossless-json.js';

describe('lossless ApplyId parsing', () => {
  it('keeps 2^53+1 and 20-digit ApplyIds exact, at any depth', () => {
    expect(parseJsonLossless('{"Data":{"ApplyId":9007199254740993}}')).toEqual({ Data: { ApplyId: '9007199254740993' } });
    expect(parseJsonLossless('{"ApplyId" :  12345678901234567890 , "x":1}')).toEqual({ ApplyId: '12345678901234567890', x: 1 });
    expect(parseJsonLossless('[{"ApplyId":1},{"ApplyId":"2"}]')).toEqual([{ ApplyId: '1' }, { ApplyId: '2' }]);
  });

  it('touches nothing else: other keys, floats, strings that look like keys', () => {
    expect(parseJsonLossless('{"Total":9007199254740993,"ApplyId":1.5}')).toEqual({ Total: 9007199254740992, ApplyId: 1.5 });
    const tricky = '{"m":"\\"ApplyId\\":123","k":"ApplyId","n":5,"s":"x\\\\","ApplyId":7}';
    expect(parseJsonLossless(tricky)).toEqual({ m: '"ApplyId":123', k: 'ApplyId', n: 5, s: 'x\\', ApplyId: '7' });
    // A value "ApplyId" followed by a number in an array is not a key.
    expect(parseJsonLossless('["ApplyId",5]')).toEqual(['ApplyId', 5]);
  });

  it('invalid JSON stays invalid', () => {
    expect(() => parseJsonLossless('{"ApplyId":1')).toThrow(SyntaxError);
    expect(() => parseJsonLossless('')).toThrow(SyntaxError);
    expect(() => parseJsonLossless('{"ApplyId":12 34}')).toThrow(SyntaxError);
  });

  it('is the identity on JSON without ApplyId keys (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = JSON.stringify(v);
        if (text.includes('"ApplyId"')) return;
        expect(quoteIntegerFields(text)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips any digit-string ApplyId inside random JSON (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 25n }), fc.jsonValue(), (id, other) => {
        const text = `{"x":${JSON.stringify(other)},"Data":{"ApplyId":${id.toString()}}}`;
        const parsed = parseJsonLossless(text) as { Data: { ApplyId: string } };
        expect(parsed.Data.ApplyId).toBe(id.toString());
      }),
      { numRuns: 300 },
    );
  });
});
