import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { maskingConfigSchema } from '../../../src/recorder/masking/masking-config.js';
import { KnownBlobs } from '../../../src/recorder/body-splitter.js';
import { Redactor, RedactorMemory } from '../../../src/recorder/redactor.js';
import { RequestBody } from '../../../src/recorder/request-body.js';
import type { RecordedEvent } from '../../../src/store/record-types.js';

const redactor = new Redactor(maskingConfigSchema.parse({}));
const SECRET = 'AKIAIOSFODNN7EXAMPLE';

function streamOf(
  fragments: string[],
  kind: 'text_delta' | 'input_json_delta' = 'text_delta',
): Array<{ event: RecordedEvent; parsed: unknown }> {
  const field = kind === 'text_delta' ? 'text' : 'partial_json';
  const raw = [
    {
      type: 'message_start',
      message: { id: 'msg_1', type: 'message', role: 'assistant', content: [], model: 'm', usage: { input_tokens: 1 } },
    },
    {
      type: 'content_block_start',
      index: 0,
      content_block:
        kind === 'text_delta' ? { type: 'text', text: '' } : { type: 'tool_use', id: 't', name: 'Bash', input: {} },
    },
    ...fragments.map((f) => ({ type: 'content_block_delta', index: 0, delta: { type: kind, [field]: f } })),
    { type: 'ping' },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5 } },
    { type: 'message_stop' },
  ];
  return raw.map((parsed, i) => ({
    event: { i, type: parsed.type, data: JSON.stringify(parsed), offset_ms: i },
    parsed,
  }));
}

/** Feed events one at a time (as a stream arrives), then flush; return what would be stored. */
function store(events: Array<{ event: RecordedEvent; parsed: unknown }>): RecordedEvent[] {
  const r = redactor.begin(`s-${Math.random()}`);
  const out: RecordedEvent[] = [];
  for (const e of events) out.push(...r.events([e]));
  out.push(...r.flushEvents());
  return out;
}

const joined = (events: RecordedEvent[], field = 'text') =>
  events
    .filter((e) => e.type === 'content_block_delta')
    .map((e) => (JSON.parse(e.data) as { delta: Record<string, string> }).delta[field])
    .join('');

describe('ExchangeRedaction.events', () => {
  it('masks a secret split across two deltas at every offset, keeping every event, in order, as valid JSON', () => {
    const text = `the key is ${SECRET} — keep it safe`;
    for (let cut = 1; cut < text.length; cut++) {
      const stored = store(streamOf([text.slice(0, cut), text.slice(cut)]));
      expect(stored.map((e) => e.i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(joined(stored)).toBe('the key is [REDACTED:aws_access_key_id] — keep it safe');
      for (const e of stored) expect(() => JSON.parse(e.data)).not.toThrow();
      // A fragment wholly before the secret is stored exactly as received.
      if (cut <= 'the key is '.length) expect(JSON.parse(stored[2]!.data).delta.text).toBe(text.slice(0, cut));
    }
  });

  it('stores exactly the masked text, however the stream is cut (property)', () => {
    const secrets = [SECRET, 'jane.doe@example.com', 'ghp_R4nd0mLooking1234567890abcdefGHIJKLM', '4111 1111 1111 1111'];
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }).map((t) => t.replace(/[=:]/g, ' ')),
        fc.constantFrom(...secrets),
        fc.nat(),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 60 }),
        (prose, secret, at, sizes) => {
          const i = at % (prose.length + 1);
          const text = `${prose.slice(0, i)} ${secret} ${prose.slice(i)}`;
          const fragments: string[] = [];
          for (let p = 0, k = 0; p < text.length; k++) {
            const n = sizes[k % sizes.length]!;
            fragments.push(text.slice(p, p + n));
            p += n;
          }
          const stored = store(streamOf(fragments));
          // Equal to masking the whole text at once: nothing the detectors catch in the whole escapes in pieces.
          expect(joined(stored)).toBe(redactor.masker.maskText(text).value);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('masks a secret spread over many small input_json_delta fragments; the joined JSON still parses', () => {
    const json = JSON.stringify({ command: `aws configure set aws_access_key_id ${SECRET}` });
    const fragments = json.match(/.{1,3}/gs)!;
    const stored = store(streamOf(fragments, 'input_json_delta'));
    const partial = joined(stored, 'partial_json');
    expect(JSON.parse(partial)).toEqual({
      command: 'aws configure set aws_access_key_id [REDACTED:aws_access_key_id]',
    });
    expect(stored.filter((e) => e.type === 'content_block_delta')).toHaveLength(fragments.length);
  });

  it('stores everything unchanged when no detector fires (property)', () => {
    const word = fc.constantFrom(
      'alpha',
      'beta',
      'the',
      'file',
      'src/index.ts',
      'function',
      '{',
      '}',
      'return',
      '42',
      'ok.',
      '\n',
    );
    fc.assert(
      fc.property(
        fc.array(
          fc.array(word, { minLength: 1, maxLength: 12 }).map((w) => w.join(' ')),
          { minLength: 1, maxLength: 20 },
        ),
        (fragments) => {
          const events = streamOf(fragments);
          expect(store(events)).toEqual(events.map((e) => e.event));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('summarises what was masked and where, never the values', () => {
    const r = redactor.begin('summary');
    r.events(streamOf([`mail jane@example.com key ${SECRET}`]));
    r.flushEvents();
    r.body(
      Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'jane@example.com' }] })),
      { messages: [{ role: 'user', content: 'jane@example.com' }] },
      'request.body',
    );
    const summary = r.summary()!;
    expect(summary.counts).toEqual({ email: 2, aws_access_key_id: 1 });
    expect(summary.findings).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'email', path: 'request.body.messages[0].content' })]),
    );
    expect(JSON.stringify(summary)).not.toContain('jane@');
  });
});

describe('ExchangeRedaction.headers', () => {
  it('masks and counts a secret header on every exchange, in every session, though the value is remembered', () => {
    const r = new Redactor(maskingConfigSchema.parse({}));
    const headers = { 'x-debug-token': `token ${SECRET}`, 'user-agent': 'claude-cli/2.1.14', date: '2026-11-23' };
    for (const session of ['a', 'a', 'b']) {
      const x = r.begin(session);
      const stored = x.headers(headers);
      expect(stored).toEqual({
        'x-debug-token': 'token [REDACTED:aws_access_key_id]',
        'user-agent': 'claude-cli/2.1.14',
        date: '2026-11-23',
      });
      expect(x.summary()!.findings).toEqual([
        { type: 'aws_access_key_id', path: 'headers["x-debug-token"]', count: 1 },
      ]);
    }
    // Remembered: the last value of each header name, with what masking made of it.
    expect(r.lastHeaders.get('x-debug-token')?.value).toBe('token [REDACTED:aws_access_key_id]');
    // A new value for a name is masked afresh.
    expect(r.begin('a').headers({ 'x-debug-token': 'nothing to hide here' })).toEqual({
      'x-debug-token': 'nothing to hide here',
    });
    const again = r.begin('d');
    expect(again.headers({ 'x-debug-token': `bearer ${SECRET}` })['x-debug-token']).toContain('[REDACTED:');
    expect(again.summary()!.findings.length).toBeGreaterThan(0);
    // Unchanged headers come back as the very object passed in: nothing is copied for the common case.
    expect(r.begin('c').headers({ 'user-agent': 'claude-cli/2.1.14' })).toEqual({ 'user-agent': 'claude-cli/2.1.14' });
  });
});

describe('Redactor session memos', () => {
  it('keep one budget over all sessions: the least recently used sessions are forgotten first', () => {
    const r = new Redactor(maskingConfigSchema.parse({}));
    // 40 sessions, each with ~1 M characters of distinct messages (short strings are their own memo keys).
    for (let s = 0; s < 40; s++) {
      const messages = Array.from({ length: 500 }, (_, i) => ({
        role: 'user',
        content: `${s}/${i} ${'x'.repeat(1990)}`,
      }));
      r.begin(`session-${s}`).json({ messages }, 'request.body');
    }
    expect(r.memoHeldChars).toBeGreaterThan(30 * 1024 * 1024);
    expect(r.memoHeldChars).toBeLessThanOrEqual(32 * 1024 * 1024 + 1_100_000);
    // The newest session is still remembered: its strings are not scanned again.
    const memo = r.memo('session-39');
    const misses = memo.misses;
    r.begin('session-39').json({ messages: [{ role: 'user', content: `39/0 ${'x'.repeat(1990)}` }] }, 'request.body');
    expect(memo.misses).toBe(misses);
  });
});

describe('RedactorMemory shared by the connections of a gateway', () => {
  /** A request body whose layout can be followed, of about `kib` KiB. */
  const layoutOf = (kib: number, tag: string) =>
    new RequestBody(
      Buffer.from(
        JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `${tag} ${'y'.repeat(kib * 1024)}` }] }),
      ),
      true,
    ).layout();

  it('keeps one budget for all connections’ last bodies, each connection seeing only its own', () => {
    const memory = new RedactorMemory();
    const a = new Redactor(maskingConfigSchema.parse({}), memory);
    const b = new Redactor(maskingConfigSchema.parse({}), memory);
    const mine = layoutOf(1, 'a');
    a.rememberBody('conversation', mine);
    expect(a.previousBody('conversation')).toBe(mine);
    expect(b.previousBody('conversation')).toBeUndefined();
    // The other connection's conversations fill the budget (64 MiB): the oldest body, the first connection's, goes.
    for (let i = 0; i < 70; i++) b.rememberBody(`conversation-${i}`, layoutOf(1024, `b${i}`));
    expect(memory.bodies.weight).toBeLessThanOrEqual(64 * 1024 * 1024);
    expect(memory.bodies.weight).toBeGreaterThan(60 * 1024 * 1024);
    expect(a.previousBody('conversation')).toBeUndefined();
    expect(b.previousBody('conversation-69')).toBeDefined();
    expect(a.previousBody('conversation-69')).toBeUndefined();
  });

  it('keeps one budget for all connections’ session memos, a session of each connection its own memo', () => {
    const memory = new RedactorMemory();
    const a = new Redactor(maskingConfigSchema.parse({}), memory);
    const b = new Redactor(maskingConfigSchema.parse({}), memory);
    expect(a.memo('same-session')).not.toBe(b.memo('same-session'));
    for (let s = 0; s < 40; s++) {
      const messages = Array.from({ length: 500 }, (_, i) => ({
        role: 'user',
        content: `${s}/${i} ${'x'.repeat(1990)}`,
      }));
      (s % 2 ? a : b).begin(`session-${s}`).json({ messages }, 'request.body');
    }
    // Each connection alone would have held up to the budget (32 Mi characters).
    expect(memory.memoHeldChars).toBeGreaterThan(30 * 1024 * 1024);
    expect(memory.memoHeldChars).toBeLessThanOrEqual(32 * 1024 * 1024 + 1_100_000);
    expect(a.memoHeldChars).toBe(memory.memoHeldChars);
  });

  it('never gives one connection what another’s masking made of the same piece', () => {
    // The pieces' outcomes are shared under one bound; a connection that masks an address must not lend its outcome
    // to one that does not (or the other way round).
    const memory = new RedactorMemory();
    const masking = new Redactor(maskingConfigSchema.parse({}), memory);
    const plain = new Redactor(maskingConfigSchema.parse({ detectors: { email: false } }), memory);
    const body = {
      model: 'm',
      system: `Write to jane@example.com ${'z'.repeat(4096)}`,
      messages: [{ role: 'user', content: 'hello' }],
    };
    // One store's blobs, as the recorder knows them for every connection.
    const known = new KnownBlobs();
    const blobs = new Map<string, string>();
    const storedText = (r: Redactor): string => {
      const out = r.begin('s').requestBody(new RequestBody(Buffer.from(JSON.stringify(body)), true), known);
      for (const x of out.blobs) {
        known.add(x.hash);
        blobs.set(x.hash, x.data.toString());
      }
      return out.body.parts.map((p) => (typeof p === 'string' ? p : blobs.get(p.$blob)!)).join('');
    };
    expect(storedText(masking)).toContain('[REDACTED:email]');
    expect(storedText(plain)).toContain('jane@example.com');
    expect(storedText(masking)).toContain('[REDACTED:email]');
    expect(storedText(plain)).toContain('jane@example.com');
    expect(memory.pieces.size).toBeGreaterThan(0);
  });
});

describe('ExchangeRedaction.text', () => {
  it('names a finding by where the text was, once', () => {
    // A regression: the label was given to the masker and put in front again (`response.errorresponse.error`).
    const r = new Redactor(maskingConfigSchema.parse({})).begin('s');
    expect(r.text('write to jane@example.com', 'response.error')).toBe('write to [REDACTED:email]');
    expect(r.summary()!.findings).toEqual([{ type: 'email', path: 'response.error', count: 1 }]);
  });
});

describe('ExchangeRedaction.requestBody', () => {
  /** The body as stored: inline parts and blobs put back together. */
  function stored(config: object, body: object): { text: string; findings: string[] } {
    const r = new Redactor(maskingConfigSchema.parse(config)).begin('s');
    const out = r.requestBody(new RequestBody(Buffer.from(JSON.stringify(body)), true), new KnownBlobs());
    const blobs = new Map(out.blobs.map((b) => [b.hash, b.data.toString()]));
    const text = out.body.parts.map((p) => (typeof p === 'string' ? p : blobs.get(p.$blob)!)).join('');
    return { text, findings: (r.summary()?.findings ?? []).map((f) => `${f.type} ${f.path}`) };
  }

  it("applies the config's path rules and secret-sounding keys to each piece at its place in the body", () => {
    // A regression: pieces were masked as if each were the whole document, so `$.metadata.user_id` never matched.
    const body = {
      model: 'claude-haiku-4-5',
      metadata: { user_id: 'alice-123' },
      api_key: 'k8Jd93hf0Qw2Lx7Zp4Rt6Vb1',
      messages: [
        { role: 'user', name: 'bob', content: 'hello' },
        { role: 'assistant', content: 'hi' },
      ],
    };
    const { text, findings } = stored({ paths: ['$.metadata.user_id', '$.messages[*].name'] }, body);
    const json = JSON.parse(text) as typeof body;
    expect(json.metadata.user_id).toBe('[REDACTED:path]');
    expect(json.messages[0]!.name).toBe('[REDACTED:path]');
    expect(json.api_key).toBe('[REDACTED:generic_secret]');
    expect(json.messages[1]).toEqual(body.messages[1]);
    expect(findings).toEqual(
      expect.arrayContaining([
        'path request.body.metadata.user_id',
        'path request.body.messages[0].name',
        'generic_secret request.body.api_key',
      ]),
    );
  });
});

describe('ExchangeRedaction.requestBody of a conversation, following its previous body', () => {
  /** Each turn's stored body, blobs written, new messages and findings, with or without following the previous body. */
  function turns(bodies: Buffer[], follow: boolean): unknown[] {
    const redactor = new Redactor(maskingConfigSchema.parse({}));
    const known = new KnownBlobs();
    const out: unknown[] = [];
    for (const raw of bodies) {
      const req = new RequestBody(raw, true);
      const previous = redactor.previousBody('conversation');
      if (follow && previous) req.follow(previous);
      const r = redactor.begin('s');
      const stored = r.requestBody(req, known);
      redactor.rememberBody('conversation', req.layout());
      for (const b of stored.blobs) known.add(b.hash);
      out.push({
        body: stored.body,
        blobs: stored.blobs.map((b) => [b.hash, b.data.toString('base64')]),
        turnMessages: stored.turnMessages,
        findings: r.summary()?.findings ?? [],
      });
    }
    return out;
  }

  it.each([
    ['messages first (Claude Code)', true],
    ['messages last', false],
  ])('stores exactly what reading each body on its own stores: %s', (_order, messagesFirst) => {
    // What following saves is the scan and the hashing of what the bodies share; what it must never do is store a
    // piece under the wrong hash or miss a secret in a changed piece.
    const base = `You are Claude Code. ${'Use the tools. '.repeat(400)}`;
    let system: unknown = [{ type: 'text', text: base }];
    const messages: unknown[] = [{ role: 'user', content: 'fix the test — please 🙂' }];
    const bodies: Buffer[] = [];
    const push = (): void => {
      const body = messagesFirst
        ? { model: 'm', messages, system, metadata: { user_id: 'u' }, stream: true }
        : { model: 'm', max_tokens: 100, system, metadata: { user_id: 'u' }, stream: true, messages };
      bodies.push(Buffer.from(JSON.stringify(body)));
    };
    push();
    for (let turn = 1; turn <= 30; turn++) {
      const id = `toolu_${turn}`;
      messages.push(
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id, name: 'Read', input: { file_path: `/src/${turn}.ts` } }],
        },
        {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: id,
              // A secret now and then, in a turn of its own and in a resent one (turn 12 is rewritten below).
              content: `${'const x = 1; // é\n'.repeat(turn * 20)}${turn % 6 === 0 ? SECRET : ''}`,
            },
          ],
        },
      );
      if (turn === 20) messages[23] = { role: 'user', content: `changed in the middle ${SECRET}` };
      // The previous body's last message rewritten as a large one: the group before it now ends before it, at the
      // same start as the previous body's last group, which went on to the end.
      if (turn === 3) messages[4] = { role: 'user', content: 'y'.repeat(5000) };
      // The system prompt: the same length, changed near its end (`Turn 10.` → `Turn 15.`), then at its start.
      if (turn % 5 === 0 && turn <= 20) system = [{ type: 'text', text: `${base} Turn ${turn}.` }];
      if (turn > 25) system = `${turn % 2 === 0 ? 'A' : 'B'}${base}`;
      push();
      if (turn % 7 === 0) push(); // the same body again (a retry)
    }
    const followed = turns(bodies, true);
    expect(followed).toEqual(turns(bodies, false));
    expect(JSON.stringify(followed)).not.toContain(SECRET);
  });
});

describe('ExchangeRedaction.requestBody of a piece seen before at another place', () => {
  /** The stored text and findings of `bodies` in turn, as one conversation (or each in a session of its own). */
  function storedTurns(
    config: object,
    bodies: object[],
    conversation: boolean,
  ): Array<{ text: string; paths: string[] }> {
    const redactor = new Redactor(maskingConfigSchema.parse(config));
    const known = new KnownBlobs();
    const blobs = new Map<string, string>();
    return bodies.map((body, i) => {
      const req = new RequestBody(Buffer.from(JSON.stringify(body)), true);
      const key = conversation ? 'one' : `session-${i}`;
      const previous = redactor.previousBody(key);
      if (previous) req.follow(previous);
      const r = redactor.begin(key);
      const out = r.requestBody(req, known);
      redactor.rememberBody(key, req.layout());
      for (const b of out.blobs) {
        known.add(b.hash);
        blobs.set(b.hash, b.data.toString());
      }
      const text = out.body.parts.map((p) => (typeof p === 'string' ? p : blobs.get(p.$blob)!)).join('');
      return { text, paths: (r.summary()?.findings ?? []).map((f) => `${f.type} ${f.path}`) };
    });
  }

  const LONG = `internal system prompt: confidential ${'x'.repeat(400)}`;

  it.each([true, false])(
    'masks a value under a masked path, though seen unmasked elsewhere (one conversation: %s)',
    (one) => {
      // Went wrong: what masking made of a piece was remembered by its bytes alone, so the same text first seen under an
      // unmasked key was later stored unmasked under a `paths` rule's key, with no finding.
      const [, second] = storedTurns(
        { paths: ['$.system'] },
        [
          { model: 'm', note: LONG, messages: [{ role: 'user', content: 'hi' }] },
          { model: 'm', system: LONG, messages: [{ role: 'user', content: 'hi' }] },
        ],
        one,
      );
      expect(JSON.parse(second!.text).system).toBe('[REDACTED:path]');
      expect(second!.paths).toEqual(['path request.body.system']);
    },
  );

  it('masks a message under a path rule for its index, though seen at another index before', () => {
    const big = { role: 'user', content: `the plan: ${'y'.repeat(5000)}` };
    const [first, second] = storedTurns(
      { paths: ['$.messages[2].content'] },
      [
        { model: 'm', messages: [{ role: 'user', content: 'a' }, big] },
        { model: 'm', messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, big] },
      ],
      true,
    );
    expect(JSON.parse(first!.text).messages[1].content).toBe(big.content);
    expect(JSON.parse(second!.text).messages[2].content).toBe('[REDACTED:path]');
    expect(second!.paths).toEqual(['path request.body.messages[2].content']);
  });
});
