/**
 * The submitter of chunks over the typed Alibaba API: BatchCheckDeviceNames for names chunks (names and
 * nicknames in the form body), BatchRegisterDevice for count chunks. Errors become {@link SubmitFailure}s
 * with the facts the state machine needs: whether the service answered (a business error: nothing was
 * created) and whether the call can be proven unprocessed (the error table's `notProcessed` column).
 */

import type { AlibabaIotApi } from '../alibaba/iot-api.js';
import { ApiError } from '../alibaba/errors.js';
import { DaemonError } from '../errors.js';
import type { SubmitFailure } from './chunk-transitions.js';
import type { ChunkSubmitter, SubmitAnswer } from './job-runner.js';

/** Maps anything a submission threw to a SubmitFailure (unknown errors: the call may have been processed). */
export function toSubmitFailure(err: unknown): SubmitFailure {
  if (err instanceof ApiError) {
    return { code: err.code, message: err.message, notProcessed: err.notProcessed, answered: err.source === 'business', scope: err.scope };
  }
  if (err instanceof DaemonError) {
    // NOTE: our own refusals before sending (bad count, too many names) never left the process; nor did a
    // submission that the lease check right before sending stopped (`LeaseUnconfirmed`, postgres backend).
    const local = err.kind === 'invalid-request' || err.kind === 'config' || err.code === LEASE_UNCONFIRMED;
    return { code: err.code, message: err.message, notProcessed: local, answered: false, scope: err.scope };
  }
  return { code: 'SubmitFailed', message: err instanceof Error ? err.message : String(err), notProcessed: false, answered: false, scope: 'attempt' };
}

/** The code of the error a lease check refuses a send with (the account runtime's gate). */
export const LEASE_UNCONFIRMED = 'LeaseUnconfirmed';

/** Options of {@link createChunkSubmitter}. */
export interface ChunkSubmitterOptions {
  /** undefined: the API's default. */
  iotInstanceId?: string | null;
  /**
   * Runs right before the signed request goes out; throwing stops it unsent. The daemon checks there that it can
   * still trust its lease of the account (postgres backend), so a replica that lost the account (paused past its
   * lease after recording the intent) does not send a submission the new owner has already parked.
   */
  beforeSend?: () => Promise<void>;
}

/** Creates the submitter. */
export function createChunkSubmitter(api: AlibabaIotApi, options: ChunkSubmitterOptions = {}): ChunkSubmitter {
  return {
    async submit(rec, spec, signal): Promise<SubmitAnswer> {
      const call = { ...(signal === undefined ? {} : { signal }), ...(options.beforeSend === undefined ? {} : { beforeSend: options.beforeSend }) };
      const instance = options.iotInstanceId === undefined ? {} : { iotInstanceId: options.iotInstanceId };
      try {
        if (rec.kind === 'count') {
          const res = await api.batchRegisterDevice({ productKey: spec.productKey, count: rec.count, ...instance }, call);
          return { ok: true, applyId: res.applyId, refused: [] };
        }
        const nicknames: Record<string, string> = {};
        for (const n of rec.names) if (n.nickname !== null) nicknames[n.deviceName] = n.nickname;
        const res = await api.batchCheckDeviceNames(
          { productKey: spec.productKey, deviceNames: rec.names.map((n) => n.deviceName), nicknames, ...instance },
          call,
        );
        const refused = new Map<string, string>();
        for (const d of res.invalidDetails) refused.set(d.deviceName, d.errors.join('; ') || 'refused by BatchCheckDeviceNames');
        for (const name of res.invalidDeviceNames) if (!refused.has(name)) refused.set(name, 'refused by BatchCheckDeviceNames (InvalidDeviceNameList)');
        for (const name of res.repeatedDeviceNames) if (!refused.has(name)) refused.set(name, 'repeated in the request (RepeatedDeviceNameList)');
        const byNickname = new Map(rec.names.filter((n) => n.nickname !== null).map((n) => [n.nickname, n.deviceName]));
        for (const nick of res.invalidDeviceNicknames ?? []) {
          const name = byNickname.get(nick);
          if (name !== undefined && !refused.has(name)) refused.set(name, `nickname ${JSON.stringify(nick)} refused (InvalidDeviceNicknameList)`);
        }
        return { ok: true, applyId: res.applyId, refused: [...refused].map(([deviceName, reason]) => ({ deviceName, reason })) };
      } catch (err) {
        return { ok: false, failure: toSubmitFailure(err) };
      }
    },
  };
}
