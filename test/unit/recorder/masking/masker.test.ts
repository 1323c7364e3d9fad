import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { compileMasker } from '../../../../src/recorder/masking/masker.js';
import { maskingConfigSchema, type MaskingConfigInput } from '../../../../src/recorder/masking/masking-config.js';
import { createMaskingMemo } from '../../../../src/recorder/masking/masking-memo.js';
import { rand } from './corpus.js';

const build = (c: MaskingConfigInput = {}) => compileMasker(maskingConfigSchema.parse(c));
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const ghToken = 'ghp_' + rand(ALNUM, 36);
const email = 'jane.roe@corp-mail.com';

function request() {
  return {
    model: 'claude-sonnet-4-5',
    max_tokens: 4096,
    metadata: { user_id: 'user_abc_account_123_session_456' },
    system: [{ type: 'text', text: 'You are Claude Code.' }],
    messages: [
      { role: 'user', content: [{ type: 'text', text: `my token is ${ghToken}, mail me at ${email}` }] },
      {
        role: 'assistant',
        content: [
          { type: 'thinking', thinking: `The user shared ${email}.`, signature: `sig-${email}-${ghToken}` },
          { type: 'redacted_thinking', data: `opaque ${ghToken}` },
          { type: 'tool_use', id: `toolu_${email}`, name: 'Bash', input: { command: `echo ${ghToken}` } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: `toolu_${email}`, content: `printed ${ghToken}` },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: `iVBOR${ghToken}` } },
        ],
      },
    ],
  };
}

describe('maskJson', () => {
  it('masks string values anywhere, keeps the structure and the values the API needs back', () => {
    const input = request();
    const before = JSON.stringify(input);
    const r = build().maskJson(input);
    const out = r.value as ReturnType<typeof request>;
    expect(JSON.stringify(input)).toBe(before); // input untouched
    expect(r.changed).toBe(true);

    expect(out.messages[0]!.content[0]).toEqual({
      type: 'text',
      text: 'my token is [REDACTED:github_token], mail me at [REDACTED:email]',
    });
    const assistant = out.messages[1]!.content as Record<string, unknown>[];
    expect(assistant[0]!['thinking']).toBe('The user shared [REDACTED:email].');
    expect(assistant[0]!['signature']).toBe(`sig-${email}-${ghToken}`);
    expect(assistant[1]!['data']).toBe(`opaque ${ghToken}`);
    expect(assistant[2]!['id']).toBe(`toolu_${email}`);
    expect(assistant[2]!['input']).toEqual({ command: 'echo [REDACTED:github_token]' });
    const results = out.messages[2]!.content as Record<string, unknown>[];
    expect(results[0]!['tool_use_id']).toBe(`toolu_${email}`);
    expect(results[0]!['content']).toBe('printed [REDACTED:github_token]');
    expect((results[1]!['source'] as Record<string, unknown>)['data']).toBe(`iVBOR${ghToken}`);

    // Same shape: same keys in the same order, every untouched subtree shared with the input.
    expect(Object.keys(out)).toEqual(Object.keys(input));
    expect(out.system).toBe(input.system);
    expect(out.metadata).toBe(input.metadata);
  });

  it('masks opaque-sounding field names where the API does not define them: tool inputs, metadata, untyped objects', () => {
    // Went wrong: `id`, `signature`, `file_id`, `tool_use_id` and `encrypted_*` were exempt at any depth, so a tool
    // input `{"signature": "Dana <dana@…>", "id": "ghp_…"}` was stored as it was.
    const sig = `Dana Roe <${email}>`;
    const loose = { signature: sig, id: ghToken, file_id: ghToken, tool_use_id: email, encrypted_content: email };
    const input = {
      metadata: { user_id: email, id: ghToken },
      messages: [
        {
          role: 'assistant',
          content: [
            // A typed object inside a tool's input is still the model's JSON, not an API block.
            {
              type: 'tool_use',
              id: 'toolu_01',
              name: 'mail',
              input: { ...loose, quoted: { type: 'thinking', ...loose } },
            },
            { type: 'thinking', thinking: 'hm', signature: `sig-${email}` },
          ],
        },
        { role: 'user', content: [{ type: 'text', text: 'hi', ...loose }] },
      ],
      ...loose,
    };
    const out = build().maskJson(input).value as typeof input;
    const masked = {
      signature: 'Dana Roe <[REDACTED:email]>',
      id: '[REDACTED:github_token]',
      file_id: '[REDACTED:github_token]',
      tool_use_id: '[REDACTED:email]',
      encrypted_content: '[REDACTED:email]',
    };
    expect(out.metadata).toEqual({ user_id: '[REDACTED:email]', id: '[REDACTED:github_token]' });
    expect(out.messages[0]!.content[0]).toEqual({
      type: 'tool_use',
      id: 'toolu_01',
      name: 'mail',
      input: { ...masked, quoted: { type: 'thinking', ...masked } },
    });
    expect(out.messages[0]!.content[1]!.signature).toBe(`sig-${email}`); // the API's own signature: kept
    expect(out.messages[1]!.content[0]).toEqual({ type: 'text', text: 'hi', ...masked });
    expect(out).toMatchObject(masked);
    // A piece of a request masked at its place: `metadata` is free-form there too.
    expect(build().maskJson({ id: ghToken }, ['metadata']).value).toEqual({ id: '[REDACTED:github_token]' });
    // A header is `{ name: value }`: a header named `signature` is no API block either.
    expect(build().maskJson({ signature: sig }).value).toEqual({ signature: 'Dana Roe <[REDACTED:email]>' });
  });

  it('keeps the opaque values of API blocks in requests, responses and stream events', () => {
    const keep = (v: unknown) => expect(build().maskJson(v).value).toBe(v);
    keep({ type: 'message', id: `msg_${email}`, content: [{ type: 'server_tool_use', id: `srvtoolu_${email}` }] });
    keep({ type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: `s${email}` } });
    keep({
      type: 'web_search_tool_result',
      tool_use_id: email,
      content: [{ type: 'web_search_result', encrypted_content: email }],
    });
    keep({ type: 'text', text: 'x', citations: [{ type: 'web_search_result_location', encrypted_index: email }] });
    keep({ type: 'document', source: { type: 'file', file_id: `file_${email}` } });
    keep({ type: 'code_execution_output', file_id: email });
    keep({ type: 'encrypted_code_execution_result', encrypted_stdout: email });
    keep({ type: 'compaction', content: 'summary', encrypted_content: email, signature: email });
    keep({ type: 'file', id: `file_${email}`, filename: 'notes.txt' });
    // A text source's data is text: masked.
    expect(build().maskJson({ type: 'text', media_type: 'text/plain', data: email }).value).toEqual({
      type: 'text',
      media_type: 'text/plain',
      data: '[REDACTED:email]',
    });
  });

  it('reports findings by JSON path and type', () => {
    const r = build().maskJson(request(), '$');
    expect(r.findings).toEqual(
      expect.arrayContaining([
        { type: 'github_token', path: '$.messages[0].content[0].text', count: 1 },
        { type: 'email', path: '$.messages[0].content[0].text', count: 1 },
        { type: 'email', path: '$.messages[1].content[0].thinking', count: 1 },
        { type: 'github_token', path: '$.messages[1].content[2].input.command', count: 1 },
        { type: 'github_token', path: '$.messages[2].content[0].content', count: 1 },
      ]),
    );
    expect(r.findings).toHaveLength(5);
  });

  it('returns the very same object when nothing needs masking', () => {
    const clean = {
      model: 'm',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hello there, how are you?' }] }],
    };
    const r = build().maskJson(clean);
    expect(r.value).toBe(clean);
    expect(r.changed).toBe(false);
    expect(r.findings).toEqual([]);
  });

  it('masks the value of a secret-named key even without an = or : in the text', () => {
    const v = {
      env: { DB_PASSWORD: 'hunter2-Horse', API_TOKEN: rand(ALNUM, 32), PATH: '/usr/bin', password: 'changeme' },
    };
    const out = build().maskJson(v).value as typeof v;
    expect(out.env.DB_PASSWORD).toBe('[REDACTED:generic_secret]');
    expect(out.env.API_TOKEN).toBe('[REDACTED:generic_secret]');
    expect(out.env.PATH).toBe('/usr/bin');
    expect(out.env.password).toBe('changeme'); // documented placeholder
  });

  it('masks object keys that are personal data, without losing entries on collision', () => {
    const v = { scores: { 'a.person@corp-mail.com': 1, 'b.person@corp-mail.com': 2, plain: 3 } };
    const r = build().maskJson(v);
    expect(r.value).toEqual({ scores: { '[REDACTED:email]': 1, '[REDACTED:email]#2': 2, plain: 3 } });
    expect(JSON.stringify(r.findings)).not.toContain('person@');
  });

  it('never puts a masked secret into a finding path', () => {
    const v = { [`key ${ghToken}`]: { nested: `x ${email}` } };
    const r = build().maskJson(v);
    expect(JSON.stringify(r.findings)).not.toContain(ghToken);
    expect(JSON.stringify(r.value)).not.toContain(ghToken);
  });

  it('masks whole values at configured paths, including with wildcards and recursive descent', () => {
    const m = build({ paths: ['$.metadata.user_id', '$.messages[*].name', '$..employee'] });
    const v = {
      metadata: { user_id: 'user_abc', other: 'x' },
      messages: [{ name: 'Ann' }, { name: 'Bob', role: 'user' }],
      deep: { a: [{ employee: { id: 7, name: 'Zed' } }] },
    };
    const r = m.maskJson(v);
    expect(r.value).toEqual({
      metadata: { user_id: '[REDACTED:path]', other: 'x' },
      messages: [{ name: '[REDACTED:path]' }, { name: '[REDACTED:path]', role: 'user' }],
      deep: { a: [{ employee: '[REDACTED:path]' }] },
    });
    expect(r.findings).toContainEqual({ type: 'path', path: '$.metadata.user_id', count: 1 });
  });

  it('a disabled masker passes everything through', () => {
    const m = build({ enabled: false });
    const v = request();
    expect(m.maskJson(v).value).toBe(v);
    expect(m.maskText(`t ${ghToken}`).value).toBe(`t ${ghToken}`);
  });
});

describe('maskText', () => {
  it('masks only the password of a URL and keeps the rest readable', () => {
    const r = build().maskText('postgres://app:Zq83hd0Lw@db.internal:5432/app', 'header:x-db');
    expect(r.value).toBe('postgres://app:[REDACTED:url_password]@db.internal:5432/app');
    expect(r.findings).toEqual([{ type: 'url_password', path: 'header:x-db', count: 1 }]);
  });

  it('counts repeated findings', () => {
    const r = build().maskText(`${email} and ${email}`);
    expect(r.findings).toEqual([{ type: 'email', path: 'text', count: 2 }]);
  });
});

describe('configuration', () => {
  it('custom rules mask with their own type', () => {
    const m = build({ rules: [{ type: 'employee_id', pattern: 'EMP-\\d{6}' }] });
    expect(m.maskText('owner EMP-123456, reviewer EMP-654321').value).toBe(
      'owner [REDACTED:employee_id], reviewer [REDACTED:employee_id]',
    );
  });

  it('switches detectors off by type', () => {
    const m = build({ detectors: { email: false, phone: false } });
    expect(m.maskText(`${email} +44 20 7946 0958 ${ghToken}`).value).toBe(
      `${email} +44 20 7946 0958 [REDACTED:github_token]`,
    );
  });

  it('allow-list entries, exact or /regex/, are not masked', () => {
    const m = build({ allow: ['test@example.com', '/@corp-mail\\.com$/'] });
    expect(m.maskText('test@example.com, jane.roe@corp-mail.com, joe@other.org').value).toBe(
      'test@example.com, jane.roe@corp-mail.com, [REDACTED:email]',
    );
  });

  it('private IP ranges are masked only when asked', () => {
    const text = 'db at 10.1.2.3 and 81.2.69.160, loopback 127.0.0.1';
    expect(build().maskText(text).value).toBe('db at 10.1.2.3 and [REDACTED:ipv4], loopback 127.0.0.1');
    expect(build({ mask_private_ips: true }).maskText(text).value).toBe(
      'db at [REDACTED:ipv4] and [REDACTED:ipv4], loopback 127.0.0.1',
    );
  });

  it('rejects bad config with the path of the problem', () => {
    const bad = (c: unknown) => {
      const r = maskingConfigSchema.safeParse(c);
      expect(r.success).toBe(false);
      return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
    };
    expect(bad({ rules: [{ type: 'emp', pattern: 'EMP-(\\d' }] })).toMatch(
      /^rules\.0\.pattern: invalid regular expression/,
    );
    expect(bad({ rules: [{ type: 'emp', pattern: 'x*' }] })).toMatch(/rules\.0\.pattern: .*empty string/);
    expect(bad({ rules: [{ type: 'Bad Type', pattern: 'x' }] })).toMatch(/^rules\.0\.type:/);
    expect(bad({ detectors: { emial: false } })).toMatch(/emial/);
    expect(bad({ paths: ['metadata.user_id'] })).toMatch(/^paths\.0: .*must start with \$/);
    expect(bad({ allow: ['/([a-z/'] })).toMatch(/^allow\.0: invalid allow-list regex/);
    expect(bad({ enabled: true, extra: 1 })).toMatch(/extra/);
  });
});

describe('session memo', () => {
  it('gives the same result and skips strings it has already seen', () => {
    const m = build();
    const memo = createMaskingMemo(1000);
    const turn1 = request();
    const first = m.maskJson(turn1, '$', memo);
    const missesAfterFirst = memo.misses;
    const turn2 = {
      ...request(),
      messages: [...request().messages, { role: 'user', content: 'one more long question here please' }],
    };
    const second = m.maskJson(turn2, '$', memo);
    expect((second.value as typeof turn2).messages.slice(0, 3)).toEqual((first.value as typeof turn1).messages);
    expect(second.findings).toEqual(expect.arrayContaining(first.findings));
    expect(memo.hits).toBeGreaterThan(0);
    expect(memo.misses - missesAfterFirst).toBe(1); // only the new message was scanned
  });

  it('keeps no copy of a long string it left unchanged (tool results are keyed by hash, not pinned in memory)', () => {
    v8.setFlagsFromString('--expose_gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const m = build();
    const memo = createMaskingMemo(100_000, 1_000_000);
    const used = (): number => {
      gc();
      return v8.getHeapStatistics().used_heap_size;
    };
    const before = used();
    // 200 distinct tool results of 100 KB: 20 MB of text the memo must not keep alive once the caller drops it.
    for (let i = 0; i < 200; i++)
      m.maskJson([`${i} ${'plain tool output '.repeat(5_500)}`.slice(0, 100_000)], '$', memo);
    expect(memo.size).toBe(200);
    expect(used() - before).toBeLessThan(5_000_000);
    // And they are still remembered: seen again, they are not scanned.
    const misses = memo.misses;
    m.maskJson([`7 ${'plain tool output '.repeat(5_500)}`.slice(0, 100_000)], '$', memo);
    expect(memo.misses).toBe(misses);
  });

  it('keys long strings by hash and evicts the oldest entries', () => {
    const m = build();
    const memo = createMaskingMemo(2);
    const long = `${'lorem ipsum '.repeat(1000)} ${email}`;
    expect(m.maskJson([long], '$', memo).value).toEqual([`${'lorem ipsum '.repeat(1000)} [REDACTED:email]`]);
    expect(m.maskJson([long], '$', memo).findings).toEqual([{ type: 'email', path: '$[0]', count: 1 }]);
    m.maskJson(['a string that is long enough #1', 'a string that is long enough #2'], '$', memo);
    expect(memo.size).toBe(2);
  });

  it('is not shared between maskers with different configs', () => {
    const memo = createMaskingMemo(100);
    const text = `write to ${email} please`;
    expect(build().maskJson([text], '$', memo).value).toEqual(['write to [REDACTED:email] please']);
    expect(build({ detectors: { email: false } }).maskJson([text], '$', memo).value).toEqual([text]);
  });
});
