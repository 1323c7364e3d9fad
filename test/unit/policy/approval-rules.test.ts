import { describe, expect, it } from 'vitest';
import type { Principal } from '../../../src/identity/principal.js';
import {
  approvalRulesSchema,
  compileApprovalRules,
  deniedClientMessage,
  deniedRecordMessage,
  evaluate,
  type ApprovalRulesInput,
} from '../../../src/policy/approval-rules.js';
import { summarizeRequest } from '../../../src/policy/approval-summary.js';
import { compileMasker } from '../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../src/recorder/masking/masking-config.js';
import { RequestBody } from '../../../src/recorder/request-body.js';

const alice: Principal = {
  method: 'oidc',
  subject: 'alice',
  issuer: 'https://idp',
  email: 'alice@example.com',
  groups: ['dev'],
};
const ci: Principal = { method: 'gateway_key', subject: 'ci', keyName: 'ci', owner: 'bob@example.com' };
const NOON = Date.UTC(2025, 0, 15, 12, 0);

function body(value: object): RequestBody {
  return new RequestBody(Buffer.from(JSON.stringify(value)), true);
}

const request = {
  model: 'claude-opus-4-1',
  max_tokens: 1024,
  system: [{ type: 'text', text: 'You are a helpful agent.' }],
  tools: [
    { name: 'Bash', input_schema: {} },
    { name: 'mcp__github__create_issue', input_schema: {} },
  ],
  messages: [
    { role: 'user', content: 'deploy the service' },
    { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'Read', input: { path: '.env' } }] },
    {
      role: 'user',
      content: [
        {
          type: 'tool_result',
          tool_use_id: 't1',
          content: [{ type: 'text', text: 'DATABASE_URL=postgres://prod-db.internal' }],
        },
      ],
    },
  ],
};

function rules(input: ApprovalRulesInput) {
  return compileApprovalRules(approvalRulesSchema.parse(input));
}

function holdsWith(
  when: ApprovalRulesInput[number]['when'],
  who: Principal = alice,
  at = NOON,
  req: object = request,
): boolean {
  return evaluate(rules([{ name: 'r', action: 'hold', when }]), who, body(req), at).action === 'hold';
}

describe('approval rule conditions', () => {
  it('prompt_matches searches the system prompt, message text and tool results', () => {
    expect(holdsWith({ prompt_matches: ['helpful agent'] })).toBe(true);
    expect(holdsWith({ prompt_matches: ['deploy the \\w+'] })).toBe(true);
    expect(holdsWith({ prompt_matches: ['/PROD-DB/i'] })).toBe(true);
    expect(holdsWith({ prompt_matches: ['PROD-DB'] })).toBe(false); // case-sensitive without /…/i
    expect(holdsWith({ prompt_matches: ['nothing-like-this', 'postgres://'] })).toBe(true); // any pattern
  });

  it('tool_result_matches looks at tool results only', () => {
    expect(holdsWith({ tool_result_matches: ['postgres://'] })).toBe(true);
    expect(holdsWith({ tool_result_matches: ['deploy'] })).toBe(false);
  });

  it('tools_offered and tools_used match tool names, with globs', () => {
    expect(holdsWith({ tools_offered: ['Bash'] })).toBe(true);
    expect(holdsWith({ tools_offered: ['mcp__github__*'] })).toBe(true);
    expect(holdsWith({ tools_offered: ['Write'] })).toBe(false);
    expect(holdsWith({ tools_used: ['Read'] })).toBe(true);
    expect(holdsWith({ tools_used: ['Bash'] })).toBe(false); // offered, never called
  });

  it('models match globs and max_tokens_above is strict', () => {
    expect(holdsWith({ models: ['claude-opus-*'] })).toBe(true);
    expect(holdsWith({ models: ['claude-sonnet-*', 'claude-haiku-?-5'] })).toBe(false);
    expect(holdsWith({ max_tokens_above: 1023 })).toBe(true);
    expect(holdsWith({ max_tokens_above: 1024 })).toBe(false);
  });

  it('callers match subject, email or key name; groups match OIDC groups', () => {
    expect(holdsWith({ callers: ['alice@example.com'] })).toBe(true);
    expect(holdsWith({ callers: ['alice'] })).toBe(true);
    expect(holdsWith({ callers: ['ci'] }, ci)).toBe(true);
    expect(holdsWith({ callers: ['ci'] })).toBe(false);
    expect(holdsWith({ groups: ['ops', 'dev'] })).toBe(true);
    expect(holdsWith({ groups: ['ops'] })).toBe(false);
    expect(holdsWith({ groups: ['dev'] }, ci)).toBe(false);
  });

  it('time_of_day, within a day and across midnight, in a time zone', () => {
    const at = (h: number, m = 0): number => Date.UTC(2025, 0, 15, h, m);
    const office = { time_of_day: { from: '09:00', to: '17:30' } };
    expect(holdsWith(office, alice, at(9))).toBe(true);
    expect(holdsWith(office, alice, at(17, 29))).toBe(true);
    expect(holdsWith(office, alice, at(17, 30))).toBe(false); // `to` is exclusive
    expect(holdsWith(office, alice, at(8, 59))).toBe(false);

    const night = { time_of_day: { from: '22:00', to: '06:00' } };
    expect(holdsWith(night, alice, at(23, 15))).toBe(true);
    expect(holdsWith(night, alice, at(0, 0))).toBe(true);
    expect(holdsWith(night, alice, at(5, 59))).toBe(true);
    expect(holdsWith(night, alice, at(6, 0))).toBe(false);
    expect(holdsWith(night, alice, at(12))).toBe(false);
    expect(holdsWith(night, alice, at(22))).toBe(true);

    // 21:30 UTC in January is 06:30 in Tokyo (UTC+9): outside the Tokyo night; 14:00 UTC is 23:00 there.
    const tokyoNight = { time_of_day: { from: '22:00', to: '06:00', tz: 'Asia/Tokyo' } };
    expect(holdsWith(tokyoNight, alice, at(21, 30))).toBe(false);
    expect(holdsWith(tokyoNight, alice, at(14))).toBe(true);
  });

  it('all given conditions must match; `when: {}` matches every call', () => {
    expect(holdsWith({ tools_offered: ['Bash'], models: ['claude-opus-*'], groups: ['dev'] })).toBe(true);
    expect(holdsWith({ tools_offered: ['Bash'], models: ['claude-haiku-*'] })).toBe(false);
    expect(holdsWith({})).toBe(true);
  });

  it('explains why a rule matched', () => {
    const r = evaluate(
      rules([{ name: 'r', action: 'hold', when: { tools_offered: ['Bash'], models: ['claude-opus-*'] } }]),
      alice,
      body(request),
      NOON,
    );
    expect(r).toMatchObject({ action: 'hold', matched: ['model claude-opus-4-1', 'tool offered: Bash'] });
  });

  it('does not parse the body when cheap conditions already fail', () => {
    const b = body(request);
    const r = evaluate(
      rules([{ name: 'r', action: 'hold', when: { groups: ['ops'], prompt_matches: ['deploy'] } }]),
      alice,
      b,
      NOON,
    );
    expect(r.action).toBe('allow');
    expect((b as unknown as { json_: unknown }).json_).toBeUndefined();
  });

  it('ignores bodies that are not Messages API requests', () => {
    expect(
      evaluate(
        rules([{ name: 'r', action: 'hold', when: { prompt_matches: ['x'] } }]),
        alice,
        new RequestBody(Buffer.from('x'), false),
        NOON,
      ),
    ).toEqual({
      action: 'allow',
    });
  });
});

describe('what prompt_matches and tool_result_matches read', () => {
  // Went wrong: only `text` blocks, plain strings, `system` and `tool_result` were read, so a deny rule's text sent in
  // a document, a search result or a tool call's input went upstream unchecked.
  const SECRET = 'connect to prod-db.internal with AKIAABCDEFGHIJKLMNOP';
  const deny = rules([
    { name: 'production credentials', action: 'deny', when: { prompt_matches: ['/prod-db\\.internal/i'] } },
  ]);
  const fromTool = rules([{ name: 'r', action: 'hold', when: { tool_result_matches: ['AKIA[0-9A-Z]{16}'] } }]);
  const asked = (content: unknown, extra: object = {}) => ({
    model: 'claude-sonnet-4-5',
    max_tokens: 10,
    messages: [{ role: 'user', content }],
    ...extra,
  });
  const places: Record<string, object> = {
    'a plain-text document': asked([
      { type: 'document', source: { type: 'text', media_type: 'text/plain', data: SECRET } },
      { type: 'text', text: 'summarise the document' },
    ]),
    'a content document': asked([
      { type: 'document', source: { type: 'content', content: [{ type: 'text', text: SECRET }] } },
    ]),
    'a document’s title and context': asked([
      { type: 'document', title: SECRET, context: 'x', source: { type: 'url', url: 'https://example.com/a.pdf' } },
    ]),
    'a search result': asked([
      { type: 'search_result', source: 'wiki', title: 't', content: [{ type: 'text', text: SECRET }] },
    ]),
    'a search result’s source': asked([{ type: 'search_result', source: SECRET, title: 't', content: [] }]),
    'an earlier tool call’s input': {
      ...asked('go on'),
      messages: [
        { role: 'user', content: 'check the database' },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 't1', name: 'Bash', input: { command: `psql -h ${SECRET}` } }],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'ok' }] },
      ],
    },
    'a key of a tool call’s input': asked([{ type: 'tool_use', id: 't1', name: 'Write', input: { [SECRET]: 1 } }]),
    'a document inside a tool result': asked([
      {
        type: 'tool_result',
        tool_use_id: 't1',
        content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: SECRET } }],
      },
    ]),
    'a search result inside a tool result': asked([
      {
        type: 'tool_result',
        tool_use_id: 't1',
        content: [{ type: 'search_result', source: 's', title: 't', content: [{ type: 'text', text: SECRET }] }],
      },
    ]),
    'thinking sent back': asked([{ type: 'thinking', thinking: SECRET, signature: 'sig' }]),
    'the system prompt’s second block': {
      ...asked('hi'),
      system: [
        { type: 'text', text: 'be brief' },
        { type: 'text', text: SECRET },
      ],
    },
  };

  it.each(Object.keys(places))('a deny rule sees its text in %s', (where) => {
    expect(evaluate(deny, alice, body(places[where]!), NOON)).toMatchObject({ action: 'deny' });
  });

  it('reads no identifiers, block types, labels or binary data', () => {
    const only = (pattern: string, content: unknown): string =>
      evaluate(
        rules([{ name: 'r', action: 'deny', when: { prompt_matches: [pattern] } }]),
        alice,
        body(asked(content)),
        NOON,
      ).action;
    const blocks = [
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgoAAAANSUhEUgAA' } },
      { type: 'document', source: { type: 'file', file_id: 'file_011CNha8iCJcU1wXNR6q4V8w' } },
      { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix' },
      { type: 'text', text: 'hello', cache_control: { type: 'ephemeral', ttl: '5m' } },
      { type: 'tool_result', tool_use_id: 'toolu_01A09q90qw90lq917835lq9', content: 'ok' },
    ];
    for (const p of ['iVBORw0KGgo', 'file_011', 'EmwKAhgB', 'ephemeral', 'toolu_01', 'image/png', '^text$', 'base64'])
      expect(only(p, blocks), p).toBe('allow');
    expect(only('hello', blocks)).toBe('deny');
    // Went wrong: the rules kept a list of identifier names of their own and skipped them in any block, where the
    // masker skips them only in the blocks the API defines them for. What masking treats as text, rules read.
    const notIds = [{ type: 'search_result', source: 's', title: 't', content: [], id: 'Project Falcon' }];
    expect(only('Falcon', notIds)).toBe('deny');
    expect(only('Falcon', [{ type: 'thinking', thinking: 'x', signature: 'Project Falcon' }])).toBe('allow');
  });

  it('tool_result_matches reads what tools brought back, whatever block holds it, and nothing else', () => {
    for (const where of ['a document inside a tool result', 'a search result inside a tool result'])
      expect(evaluate(fromTool, alice, body(places[where]!), NOON), where).toMatchObject({ action: 'hold' });
    const serverTool = asked([
      {
        type: 'web_fetch_tool_result',
        tool_use_id: 'srvtoolu_1',
        content: {
          type: 'web_fetch_result',
          url: 'https://example.com',
          content: { type: 'document', source: { type: 'text', media_type: 'text/plain', data: SECRET } },
        },
      },
    ]);
    expect(evaluate(fromTool, alice, body(serverTool), NOON)).toMatchObject({ action: 'hold' });
    // Written by a person or by the model, not brought back by a tool: prompt_matches, not tool_result_matches.
    for (const where of ['a plain-text document', 'a search result', 'an earlier tool call’s input'])
      expect(evaluate(fromTool, alice, body(places[where]!), NOON), where).toEqual({ action: 'allow' });
  });

  it('a body nested deeper than the stack reaches is read, not a crash', () => {
    const deep = `${'['.repeat(50_000)}${JSON.stringify(SECRET)}${']'.repeat(50_000)}`;
    const json = JSON.stringify(asked([{ type: 'tool_use', id: 't', name: 'x', input: { v: 'HERE' } }])).replace(
      '"HERE"',
      deep,
    );
    expect(evaluate(deny, alice, new RequestBody(Buffer.from(json), true), NOON)).toMatchObject({ action: 'deny' });
  });

  it('shows approvers where the pattern matched, wherever it was', () => {
    const masker = compileMasker(maskingConfigSchema.parse({}));
    const summary = summarizeRequest(places['a plain-text document'], masker, [/prod-db\.internal/i]);
    expect(summary.excerpts).toEqual([
      'connect to prod-db.internal with [REDACTED:aws_access_key_id]\nsummarise the document',
    ]);
  });
});

describe('evaluate order', () => {
  const set = rules([
    { name: 'opus needs a yes', action: 'hold', when: { models: ['claude-opus-*'] } },
    {
      name: 'no prod database',
      action: 'deny',
      message: 'production credentials must not be sent to Claude',
      when: { prompt_matches: ['prod-db'] },
    },
    { name: 'big answers', action: 'hold', when: { max_tokens_above: 100 } },
  ]);

  it('a deny rule wins over a hold rule listed before it', () => {
    expect(evaluate(set, alice, body(request), NOON)).toMatchObject({
      action: 'deny',
      rule: { name: 'no prod database' },
      message: 'production credentials must not be sent to Claude',
    });
  });

  it('otherwise the first matching hold rule in config order', () => {
    const clean = { ...request, messages: [{ role: 'user', content: 'hi' }] };
    expect(evaluate(set, alice, body(clean), NOON)).toMatchObject({
      action: 'hold',
      rule: { name: 'opus needs a yes' },
    });
    expect(evaluate(set, alice, body({ ...clean, model: 'claude-haiku-4-5' }), NOON)).toMatchObject({
      action: 'hold',
      rule: { name: 'big answers' },
    });
    expect(evaluate(set, alice, body({ ...clean, model: 'claude-haiku-4-5', max_tokens: 10 }), NOON)).toEqual({
      action: 'allow',
    });
  });

  it('no rules: allow, without reading the body', () => {
    const b = body(request);
    expect(evaluate(compileApprovalRules(undefined), alice, b, NOON)).toEqual({ action: 'allow' });
    expect((b as unknown as { members_: unknown }).members_).toBeUndefined();
  });

  it('a deny rule without a message names the rule', () => {
    const r = evaluate(rules([{ name: 'nope', action: 'deny', when: {} }]), alice, body(request), NOON);
    expect(r).toMatchObject({ action: 'deny', message: 'refused by approval rule "nope"' });
  });
});

describe('approval rules schema', () => {
  const problems = (input: unknown): string[] => {
    const r = approvalRulesSchema.safeParse(input);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('applies hold defaults and parses durations', () => {
    const [r] = compileApprovalRules(
      approvalRulesSchema.parse([{ name: 'h', action: 'hold', when: {}, grant: '30m' }]),
    ).rules;
    expect(r).toMatchObject({ timeoutMs: 300_000, approvalsRequired: 1, approverGroups: [], grantMaxMs: 1_800_000 });
  });

  it('reports bad regexes, clocks, zones, unknown keys and misplaced options with their paths', () => {
    expect(problems([{ name: 'a', action: 'hold', when: { prompt_matches: ['(unclosed'] } }])[0]).toMatch(
      /^0\.when\.prompt_matches\.0: not a valid regular expression/,
    );
    expect(problems([{ name: 'a', action: 'hold', when: { time_of_day: { from: '25:00', to: '06:00' } } }])[0]).toMatch(
      /^0\.when\.time_of_day\.from/,
    );
    expect(
      problems([
        { name: 'a', action: 'hold', when: { time_of_day: { from: '22:00', to: '06:00', tz: 'Mars/Olympus' } } },
      ])[0],
    ).toMatch(/IANA/);
    expect(problems([{ name: 'a', action: 'hold', when: { time_of_day: { from: '22:00', to: '22:00' } } }])[0]).toMatch(
      /must differ/,
    );
    expect(problems([{ name: 'a', action: 'hold', when: { prompt: ['x'] } }])[0]).toMatch(/^0\.when: /);
    expect(problems([{ name: 'a', action: 'deny', when: {}, timeout: '1m' }])).toEqual([
      '0.timeout: only hold rules take timeout',
    ]);
    expect(problems([{ name: 'a', action: 'hold', when: {}, timeout: '5 minutes' }])[0]).toMatch(
      /^0\.timeout: must be a duration/,
    );
    expect(
      problems([
        { name: 'a', action: 'hold', when: {} },
        { name: 'a', action: 'deny', when: {} },
      ]),
    ).toEqual(['1.name: duplicate rule name "a"']);
  });
});

describe('Message Batches', () => {
  const set = rules([
    { name: 'no prod database', action: 'deny', when: { prompt_matches: ['prod-db'] } },
    { name: 'bash needs a yes', action: 'hold', when: { tools_offered: ['Bash'] } },
  ]);
  const clean = {
    model: 'claude-haiku-4-5',
    max_tokens: 10,
    messages: [{ role: 'user', content: 'summarise the changelog' }],
  };
  const batch = (...params: object[]) => ({
    requests: params.map((p, i) => ({ custom_id: `job-${i}`, params: p })),
  });

  it('judges each request of a batch as if it were sent alone: a batch is no way around a rule', () => {
    expect(evaluate(set, alice, body(batch(clean, clean)), NOON)).toEqual({ action: 'allow' });
    const held = evaluate(set, alice, body(batch(clean, { ...clean, tools: request.tools })), NOON);
    expect(held).toMatchObject({ action: 'hold', rule: { name: 'bash needs a yes' } });
    expect(held.action === 'hold' && held.matched).toEqual(['requests[1] (custom_id job-1): tool offered: Bash']);
    // One denied request refuses the whole batch, even after held ones.
    const denied = evaluate(set, alice, body(batch({ ...clean, tools: request.tools }, clean, request)), NOON);
    expect(denied).toMatchObject({ action: 'deny', rule: { name: 'no prod database' } });
    expect(denied.action === 'deny' && denied.matched[0]).toMatch(/^requests\[2\] \(custom_id job-2\): /);
  });

  it('lists every request that matched the same hold rule', () => {
    const held = evaluate(
      set,
      alice,
      body(batch({ ...clean, tools: request.tools }, clean, { ...clean, tools: request.tools })),
      NOON,
    );
    expect(held.action === 'hold' && held.matched).toEqual([
      'requests[0] (custom_id job-0): tool offered: Bash',
      'requests[2] (custom_id job-2): tool offered: Bash',
    ]);
  });

  it('shows approvers the first request of a held batch, masked, and says it is a batch', () => {
    const masker = compileMasker(maskingConfigSchema.parse({}));
    const key = 'AKIAIOSFODNN7EXAMPLE';
    const summary = summarizeRequest(
      batch({ ...clean, tools: request.tools, messages: [{ role: 'user', content: `use ${key}` }] }, clean),
      masker,
    );
    expect(summary).toMatchObject({ model: 'claude-haiku-4-5', toolsOffered: ['Bash', 'mcp__github__create_issue'] });
    expect(summary.lastTurn).toBe('[Message Batch of 2 requests; the first:] use [REDACTED:aws_access_key_id]');
    expect(summary.masked).toEqual(['aws_access_key_id']);
  });

  it('judges a body that only looks like a batch as a Messages request', () => {
    expect(evaluate(set, alice, body({ requests: 'not a list', ...clean }), NOON)).toEqual({ action: 'allow' });
  });
});

describe('the recorded message of a deny rule', () => {
  it('gives back the message the client received, whatever the rule is called', () => {
    for (const name of ['prod', 'say "no": never', 'back\\slash']) {
      const recorded = deniedRecordMessage(name, 'production credentials must not be sent');
      expect(recorded.startsWith('rule "')).toBe(true);
      expect(deniedClientMessage(recorded)).toBe('production credentials must not be sent');
    }
    expect(deniedClientMessage('rule "prod": not sent')).toBe('not sent');
  });
});
