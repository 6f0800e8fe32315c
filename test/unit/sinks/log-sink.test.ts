import { describe, expect, it } from 'vitest';

import { EVENT_TYPES } from '../../../src/events.js';
import { createLogSink, logLevelFor } from '../../../src/sinks/log-sink.js';

import { captureLogger, makeEvent } from './helpers.js';

describe('createLogSink', () => {
  it('logs one info line with the whole event under `event` and the type in msg', async () => {
    const { logger, entries } = captureLogger();
    const sink = createLogSink(logger);
    expect(sink.name).toBe('log');
    const event = makeEvent();
    await sink.deliver(event);
    const lines = entries();
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe(30);
    expect(lines[0]!.event).toEqual(event);
    expect(lines[0]!.msg).toBe('batch.settled a1BwAGVxxxx/1295006 created');
  });

  it.each(['batch.stalled', 'batch.unexpected_status', 'batch.rejected'] as const)('logs %s at warn', async (type) => {
    const { logger, entries } = captureLogger();
    await createLogSink(logger).deliver(makeEvent({ type, outcome: undefined, status: 'WEIRD' }));
    expect(entries()[0]!.level).toBe(40);
    expect(entries()[0]!.msg).toBe(`${type} a1BwAGVxxxx/1295006 WEIRD`);
  });

  it('uses info for every other type', () => {
    const info = EVENT_TYPES.filter((t) => logLevelFor(t) === 'info');
    expect(info).toEqual([
      'batch.added',
      'batch.status_changed',
      'batch.awaiting_registration',
      'batch.registration_requested',
      'batch.settled',
      'batch.cancelled',
    ]);
  });

  it('always resolves, even when the logger throws', async () => {
    const { logger } = captureLogger();
    logger.info = () => {
      throw new Error('broken destination');
    };
    await expect(createLogSink(logger).deliver(makeEvent())).resolves.toBeUndefined();
  });
});
