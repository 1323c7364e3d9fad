import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KnownBlobs, blobHashes, joinBody, splitBody } from '../../../src/recorder/body-splitter.js';

const conversation = (turns: number) => ({
  model: 'claude-sonnet-4-5',
  max_tokens: 32000,
  system: [{ type: 'text', text: 'You are Claude Code. '.repeat(400), cache_control: { type: 'ephemeral' } }],
  tools: Array.from({ length: 12 }, (_, i) => ({
    name: `Tool${i}`,
    description: 'does things '.repeat(30),
    input_schema: { type: 'object' },
  })),
  messages: Array.from({ length: turns }, (_, i) => ({
    role: i % 2 ? 'assistant' : 'user',
    content: [{ type: 'text', text: `turn ${i}: ${'words and more words '.repeat(20)}` }],
  })),
  metadata: { user_id: 'user_abc_account_def_session_123' },
  stream: true,
});

function roundTrip(raw: Buffer, value: unknown, known?: KnownBlobs) {
  const { body, blobs } = splitBody(raw, value, known ? { known } : {});
  const map = new Map(blobs.map((b) => [b.hash, b.data]));
  return { body, blobs, joined: joinBody(body, map) };
}

describe('splitBody', () => {
  it('gives back the exact bytes of a compact JSON body, split at message boundaries', () => {
    const value = conversation(5);
    const raw = Buffer.from(JSON.stringify(value));
    const { body, joined, blobs } = roundTrip(raw, value);
    expect(joined.equals(raw)).toBe(true);
    expect(body.size).toBe(raw.length);
    // system, tools and the messages (in content-defined groups) are separate blobs
    expect(blobs.length).toBeGreaterThanOrEqual(3);
  });

  it('stores a pretty-printed (non-canonical) body whole, byte for byte', () => {
    const value = conversation(2);
    const raw = Buffer.from(JSON.stringify(value, null, 2));
    const { body, joined } = roundTrip(raw, value);
    expect(joined.equals(raw)).toBe(true);
    expect(blobHashes(body)).toHaveLength(1);
  });

  it('keeps non-JSON and binary bodies exactly', () => {
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0x01, ...Array(300).fill(7)]);
    const { body, joined } = roundTrip(binary, undefined);
    expect(body.binary).toBe(true);
    expect(joined.equals(binary)).toBe(true);
    expect(roundTrip(Buffer.from('short text'), undefined).joined.toString()).toBe('short text');
  });

  it('on the next turns of a conversation, writes only what is new', () => {
    const known = new KnownBlobs();
    const t1 = conversation(3);
    const r1 = Buffer.from(JSON.stringify(t1));
    const first = splitBody(r1, t1, { known });
    for (const b of first.blobs) known.add(b.hash);
    const t2 = conversation(5);
    const r2 = Buffer.from(JSON.stringify(t2));
    const second = splitBody(r2, t2, { known });
    const newBytes = second.blobs.reduce((n, b) => n + b.data.length, 0);
    // Only the group left open at the end of turn 1 and the new messages are written: never system or tools.
    expect(second.blobs.some((b) => b.data.includes('You are Claude Code') || b.data.includes('does things'))).toBe(
      false,
    );
    expect(second.blobs.every((b) => b.data.includes('"role"'))).toBe(true);
    expect(newBytes).toBeLessThan(r2.length / 4);
  });

  it('round-trips any JSON object exactly (property)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue()),
        fc.array(fc.jsonValue(), { maxLength: 8 }),
        (obj, messages) => {
          const value = { ...obj, messages };
          const raw = Buffer.from(JSON.stringify(value));
          expect(roundTrip(raw, JSON.parse(raw.toString())).joined.equals(raw)).toBe(true);
        },
      ),
    );
  });
});
