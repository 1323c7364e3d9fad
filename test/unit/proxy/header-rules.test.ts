import { describe, expect, it } from 'vitest';
import { clientResponseHeaders, upstreamRequestHeaders } from '../../../src/proxy/header-rules.js';

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop headers, those named in Connection, the caller’s credentials and cookies, and x-vigil-*', () => {
    const out = upstreamRequestHeaders(
      {
        host: 'gw',
        connection: 'keep-alive, x-drop-me',
        'x-drop-me': '1',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        'content-length': '10',
        authorization: 'Bearer caller-token',
        'x-api-key': 'caller-key',
        cookie: 'intranet_session=caller-session',
        'x-vigil-session': 's',
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'a,b',
        'x-unknown': 'kept',
      },
      { header: 'x-api-key', value: 'gateway-key' },
    );
    expect(out).toEqual({
      'anthropic-version': '2023-06-01',
      'anthropic-beta': 'a,b',
      'x-unknown': 'kept',
      'x-api-key': 'gateway-key',
    });
  });

  it('sends an authorization-style credential as a bearer token', () => {
    expect(upstreamRequestHeaders({ 'x-api-key': 'caller' }, { header: 'authorization', value: 'tok' })).toEqual({
      authorization: 'Bearer tok',
    });
  });
});

describe('clientResponseHeaders', () => {
  it('passes upstream headers except hop-by-hop ones', () => {
    expect(
      clientResponseHeaders({
        'content-type': 'text/event-stream',
        'transfer-encoding': 'chunked',
        connection: 'keep-alive',
        'request-id': 'req_1',
      }),
    ).toEqual({ 'content-type': 'text/event-stream', 'request-id': 'req_1' });
  });
});
