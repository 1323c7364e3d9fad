import { describe, expect, it } from 'vitest';
import { RequestMatcher, type MatchResult } from '../../../src/replay/request-matcher.js';
import { messages, recorded } from './recorded-exchange.js';

const post = (body: unknown, path = '/v1/messages') => ({ method: 'POST', path, body });
const served = (r: MatchResult) => (r.kind === 'recorded' ? `${r.exchange.id} ${r.how}` : r.message);

describe('RequestMatcher', () => {
  it('answers in recorded order, each recorded exchange once; a duplicate only as often as it was recorded', () => {
    // An SDK retry after a recorded 529: the same body twice.
    const m = new RequestMatcher([
      recorded({ id: 'ex_1', body: messages('hi'), status: 529 }),
      recorded({ id: 'ex_2', body: messages('hi') }),
      recorded({ id: 'ex_3', body: messages('bye') }),
    ]);
    expect(served(m.match(post(messages('bye'))))).toBe('ex_3 exact');
    expect(served(m.match(post(messages('hi'))))).toBe('ex_1 exact');
    expect(served(m.match(post(messages('hi'))))).toBe('ex_2 exact');
    expect(served(m.match(post(messages('hi'))))).toBe(
      'replay diverged: this request repeats turn 1 of 3 (ex_1), which was recorded 2 times and has been answered as often already',
    );
    expect(m.served).toBe(3);
  });

  it('prefers an exact match to an earlier normalised one', () => {
    const body = (user: string) => ({ ...messages('hi'), metadata: { user_id: user } });
    const m = new RequestMatcher([
      recorded({ id: 'ex_a', body: body('run-a') }),
      recorded({ id: 'ex_b', body: body('run-b') }),
    ]);
    expect(served(m.match(post(body('run-b'))))).toBe('ex_b exact');
    expect(served(m.match(post(body('run-c'))))).toBe('ex_a normalised');
  });

  it('lets text the recorder masked stand for any text', () => {
    const m = new RequestMatcher([
      recorded({ id: 'ex_m', body: messages('my key is [REDACTED:anthropic_api_key], keep it') }),
    ]);
    expect(served(m.match(post(messages('my key is sk-ant-api03-abc, drop it'))))).toContain(
      "messages[0].content differs from the recording: recorded text 'my key is [REDACTED:anthropic_api_key], …', got 'my key is sk-ant-api03-abc, drop it'",
    );
    expect(served(m.match(post(messages('my key is sk-ant-api03-abc, keep it'))))).toBe('ex_m normalised');
  });

  it('answers reads (count_tokens, GET) again once their recorded copies are used', () => {
    const m = new RequestMatcher([
      recorded({ id: 'ex_c', path: '/v1/messages/count_tokens', body: messages('hi') }),
      recorded({ id: 'ex_g', method: 'GET', path: '/v1/models' }),
    ]);
    for (let i = 0; i < 2; i++) {
      expect(served(m.match(post(messages('hi'), '/v1/messages/count_tokens')))).toBe('ex_c exact');
      expect(served(m.match({ method: 'GET', path: '/v1/models', body: null }))).toBe('ex_g exact');
    }
  });

  it('ignores exchanges that never got their response', () => {
    const m = new RequestMatcher([recorded({ id: 'ex_p', body: messages('hi'), outcome: 'in_progress' })]);
    expect(served(m.match(post(messages('hi'))))).toBe(
      'replay diverged: the recording holds no POST /v1/messages request (it holds nothing)',
    );
  });

  describe('when a request diverges', () => {
    const session = [
      recorded({ id: 'ex_1', body: messages('one') }),
      recorded({ id: 'ex_2', path: '/v1/messages/count_tokens', body: messages('one') }),
      recorded({ id: 'ex_3', body: messages('one', 'two') }),
      recorded({ id: 'ex_4', body: messages('one', 'two', 'three') }),
    ];

    it('names the turn it is closest to and the first differing path', () => {
      const m = new RequestMatcher(session);
      m.match(post(messages('one')));
      expect(served(m.match(post(messages('one', 'two', 'THREE'))))).toBe(
        "replay diverged at turn 4 of 4 (ex_4): the request's messages[2].content differs from the recording: " +
          "recorded text 'three', got 'THREE'",
      );
      expect(served(m.match(post({ ...messages('one', 'two'), max_tokens: 5 })))).toBe(
        "replay diverged at turn 3 of 4 (ex_3): the request's max_tokens differs from the recording: recorded 100, got 5",
      );
    });

    it('says when the recording has run out of requests of that kind', () => {
      const m = new RequestMatcher(session);
      for (const n of [1, 2, 3]) m.match(post(messages(...['one', 'two', 'three'].slice(0, n))));
      expect(served(m.match(post(messages('one', 'two', 'three', 'four'))))).toBe(
        'replay diverged after turn 4 of 4: all 3 recorded POST /v1/messages requests were already answered, and this one is new; ' +
          "nearest is turn 4 (ex_4), where the request's messages[3] differs from the recording: " +
          'recorded nothing, got object {"role":"user","content":"four"} (recorded 3 items, got 4)',
      );
    });

    it('names what the recording holds when it has nothing on that path', () => {
      const m = new RequestMatcher(session);
      expect(served(m.match({ method: 'POST', path: '/v1/messages/batches', body: {} }))).toBe(
        'replay diverged: the recording holds no POST /v1/messages/batches request ' +
          '(it holds POST /v1/messages ×3, POST /v1/messages/count_tokens ×1)',
      );
    });
  });
});
