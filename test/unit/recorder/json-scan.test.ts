import { describe, expect, it } from 'vitest';
import {
  commonPrefixLength,
  commonSuffixLength,
  scanObject,
  type EarlierScan,
  type Member,
} from '../../../src/recorder/json-scan.js';
import { mulberry32 } from '../../../bench/prng.mjs';

const WORDS = ['read', 'the', 'file', 'é', '日本語', '🙂', 'a"quote', 'back\\slash', '[', '}', ',', ':', '\n', 'done'];

function text(rand: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
}

function message(rand: () => number, i: number): unknown {
  return i % 2 === 0
    ? { role: 'user', content: [{ type: 'tool_result', tool_use_id: `toolu_${i}`, content: text(rand, 5 + (i % 40)) }] }
    : {
        role: 'assistant',
        content: [
          { type: 'text', text: text(rand, 3 + (i % 7)) },
          { type: 'tool_use', id: `toolu_${i + 1}`, name: 'Read', input: { file_path: `/src/${i}.ts`, n: i } },
        ],
      };
}

/** Serialises `body` with its keys in `order`, optionally pretty-printed or with spaces the way some clients do. */
function serialise(body: Record<string, unknown>, order: string[], spaced: boolean): Buffer {
  const parts = order
    .filter((k) => k in body)
    .map((k) => `${JSON.stringify(k)}:${spaced ? ' ' : ''}${JSON.stringify(body[k])}`);
  return Buffer.from(`{${parts.join(spaced ? ', ' : ',')}}`);
}

function earlierOf(previous: Buffer, members: Member[] | null, next: Buffer): EarlierScan | undefined {
  if (!members) return undefined;
  const prefix = commonPrefixLength(next, previous);
  const suffix = commonSuffixLength(next, previous, Math.min(next.length, previous.length) - prefix);
  return { raw: previous, members, prefix, suffix };
}

describe('scanObject', () => {
  it('finds members and messages as byte ranges, whatever the characters in them', () => {
    const body = { model: 'claude-é', messages: [{ role: 'user', content: '日本語 🙂 "x"' }, 1, [2]], max_tokens: 5 };
    const raw = Buffer.from(JSON.stringify(body));
    const members = scanObject(raw)!;
    expect(members.map((m) => m.key)).toEqual(['model', 'messages', 'max_tokens']);
    for (const m of members) {
      expect(JSON.parse(raw.toString('utf8', m.start, m.end))).toEqual(body[m.key as keyof typeof body]);
    }
    const elements = members[1]!.elements!.map(([s, e]) => JSON.parse(raw.toString('utf8', s, e)) as unknown);
    expect(elements).toEqual(body.messages);
  });

  it('refuses what is not an object of members', () => {
    for (const bad of ['[1]', '{"a":1', '{"a" 1}', '{"messages":[1 2]}', '{"messages":[1,]}', '{"a":1}x', '"s"', ''])
      expect(scanObject(Buffer.from(bad)), bad).toBeNull();
    expect(scanObject(Buffer.from(' { } '))).toEqual([]);
  });

  it('scanning from the previous body of a conversation gives exactly what a whole scan gives', () => {
    // Went wrong would be silent: a piece cut at the wrong byte is stored and masked as the wrong text. So every
    // kind of change a client makes between turns is tried against a scan of the whole body.
    for (let seed = 1; seed <= 60; seed++) {
      const rand = mulberry32(seed);
      const order =
        seed % 3 === 0
          ? ['model', 'messages', 'system', 'tools', 'metadata', 'max_tokens', 'stream']
          : seed % 3 === 1
            ? ['model', 'max_tokens', 'system', 'tools', 'metadata', 'stream', 'messages']
            : ['messages', 'model', 'system'];
      const spaced = seed % 5 === 0;
      const body: Record<string, unknown> = {
        model: 'claude-sonnet-4-5',
        max_tokens: 32000,
        system: [{ type: 'text', text: text(rand, 200) }],
        tools: [{ name: 'Read', description: text(rand, 100), input_schema: { type: 'object' } }],
        metadata: { user_id: `user_${seed}` },
        stream: true,
        messages: [message(rand, 0)],
      };
      let previous = serialise(body, order, spaced);
      let members = scanObject(previous);
      for (let turn = 1; turn < 25; turn++) {
        const messages = body.messages as unknown[];
        const change = rand();
        if (change < 0.5) messages.push(message(rand, turn * 2 - 1), message(rand, turn * 2));
        else if (change < 0.6 && messages.length > 2)
          messages[Math.floor(rand() * messages.length)] = message(rand, 99);
        else if (change < 0.7) (messages.at(-1) as Record<string, unknown>).cache_control = { type: 'ephemeral' };
        else if (change < 0.75 && messages.length > 3)
          messages.splice(1, 2); // compaction: shorter
        else if (change < 0.8) body.system = [{ type: 'text', text: text(rand, 200) }];
        else if (change < 0.85) body.stream = !body.stream;
        else if (change < 0.9) body.max_tokens = Math.floor(rand() * 100000); // a number: ends at its delimiter
        // else: the same body again
        const next = serialise(body, order, spaced);
        const whole = scanObject(next);
        expect(whole, `seed ${seed} turn ${turn}`).not.toBeNull();
        expect(scanObject(next, earlierOf(previous, members, next)), `seed ${seed} turn ${turn}`).toEqual(whole);
        previous = next;
        members = whole;
      }
    }
  });

  it('scanning from a previous body takes nothing from it that the shared bytes do not vouch for', () => {
    for (const [before, after] of [
      // A number that ended where the shared start ends goes on in the next body.
      ['{"a":10,"b":1}', '{"a":100,"b":1}'],
      ['{"messages":[1,22],"b":1}', '{"messages":[1,223],"b":1}'],
      // A member ends where a member of the previous body ended, shifted, but what follows is not shared.
      ['{"messages":[1],"system":"abc"}', '{"messages":[1,2],"s":1,"t":"ab"}'],
      // The same body again.
      ['{"messages":[1],"system":"abc"}', '{"messages":[1],"system":"abc"}'],
    ] as const) {
      const previous = Buffer.from(before);
      const next = Buffer.from(after);
      expect(scanObject(next, earlierOf(previous, scanObject(previous), next)), after).toEqual(scanObject(next));
    }
  });

  it('scanning from a previous body refuses a malformed body as a whole scan does', () => {
    const previous = Buffer.from('{"model":"m","messages":[{"a":1},{"b":2}],"max_tokens":10}');
    const members = scanObject(previous)!;
    for (const bad of [
      '{"model":"m","messages":[{"a":1},{"b":2} {"c":3}],"max_tokens":10}',
      '{"model":"m","messages":[{"a":1},{"b":2}],"max_tokens":10',
      '{"model":"m","messages":[{"a":1},{"b":2}],"max_tokens":10}}',
      '{"model":"m","messages":[{"a":1},{"b":2}],"max_tokens":}',
    ]) {
      const next = Buffer.from(bad);
      expect(scanObject(next, earlierOf(previous, members, next)), bad).toBeNull();
    }
  });
});

describe('common prefix and suffix', () => {
  it('measure shared bytes across and inside the 4 KiB steps', () => {
    const a = Buffer.alloc(10_000, 0x61);
    for (const at of [0, 1, 4095, 4096, 4097, 8191, 9999]) {
      const b = Buffer.from(a);
      b[at] = 0x62;
      expect(commonPrefixLength(a, b), `prefix ${at}`).toBe(at);
      expect(commonSuffixLength(a, b, 10_000), `suffix ${at}`).toBe(9999 - at);
    }
    expect(commonPrefixLength(a, a.subarray(0, 5000))).toBe(5000);
    expect(commonSuffixLength(a, a.subarray(0, 5000), 3000)).toBe(3000);
  });
});
