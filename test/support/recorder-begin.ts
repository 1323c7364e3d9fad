import { ANONYMOUS } from '../../src/identity/principal.js';
import { maskingConfigSchema } from '../../src/recorder/masking/masking-config.js';
import type { Recorder } from '../../src/recorder/recorder.js';
import { Redactor } from '../../src/recorder/redactor.js';
import { RequestBody } from '../../src/recorder/request-body.js';

/** Begins recording a small JSON call from an anonymous caller, as the proxy would: resolves once it is durable. */
export function beginCall(
  recorder: Recorder,
  exchangeId: string,
  redactor = new Redactor(maskingConfigSchema.parse({})),
): ReturnType<Recorder['begin']> {
  return recorder.begin({
    exchangeId,
    connection: 'anthropic',
    principal: ANONYMOUS,
    clientAddress: '127.0.0.1',
    method: 'POST',
    path: '/v1/messages',
    query: '',
    headers: { 'content-type': 'application/json' },
    body: RequestBody.received(Buffer.from('{"model":"claude-x","messages":[]}'), 'application/json'),
    bestEffort: false,
    level: 'full',
    redactor,
  });
}
