/**
 * The official SDK's signing helpers (@alicloud/openapi-util, a devDependency), wherever Node's CJS/ESM
 * interop put them: the package is CommonJS compiled from TS, so the class is `module.exports.default`,
 * which an ESM namespace import exposes as `default.default`.
 */
import * as openApiUtilModule from '@alicloud/openapi-util';

export interface OpenApiUtilStatic {
  getRPCSignature(params: Record<string, string>, method: string, secret: string): string;
  getAuthorization(
    request: { pathname: string; method: string; query: Record<string, string>; headers: Record<string, string> },
    algorithm: string,
    payload: string,
    accessKeyId: string,
    secret: string,
  ): string;
}

export function sdkUtil(): OpenApiUtilStatic {
  const m = openApiUtilModule as unknown as { default: { default?: OpenApiUtilStatic } & Partial<OpenApiUtilStatic> };
  const candidate = m.default.default ?? (m.default as OpenApiUtilStatic);
  if (typeof candidate.getRPCSignature !== 'function') throw new Error('cannot find OpenApiUtil');
  return candidate;
}
