import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SseDecoder, type SseDecoderOptions, type SseEvent } from '../../../src/recorder/sse-decoder.js';

/** Feed `bytes` cut at `cuts` (offsets, ascending) and end the stream; every event and the end report. */
function decode(bytes: Buffer, cuts: readonly number[] = [], options?: SseDecoderOptions) {
  const decoder = new SseDecoder(options);
  const events: SseEvent[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    events.push(...decoder.push(bytes.subarray(from, cut)));
    from = cut;
  }
  const end = decoder.end();
  return { events: [...events, ...end.events], flushed: end.events, trailingBytes: end.trailingBytes };
}

function byteByByte(bytes: Buffer): number[] {
  return Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
}

/** A short stream framed the way the Messages API frames it, with non-ASCII text in its data. */
const CAPTURED = [
  'event: message_start',
  'data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}',
  '',
  'event: content_block_start',
  'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
  '',
  'event: ping',
  'data: {"type": "ping"}',
  '',
  'event: content_block_delta',
  'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Météo à Paris 🌤️ (巴黎)"}}',
  '',
  'event: content_block_stop',
  'data: {"type":"content_block_stop","index":0}',
  '',
  'event: message_stop',
  'data: {"type":"message_stop"}',
  '',
  '',
].join('\n');

const CAPTURED_EVENTS: SseEvent[] = CAPTURED.split('\n\n')
  .filter((frame) => frame !== '')
  .map((frame) => {
    const [eventLine, dataLine] = frame.split('\n') as [string, string];
    return { type: eventLine.slice('event: '.length), data: dataLine.slice('data: '.length) };
  });

describe('SseDecoder', () => {
  it('decodes a captured stream the same whole, byte by byte, and cut in two at every offset', () => {
    const bytes = Buffer.from(CAPTURED);
    expect(decode(bytes)).toEqual({ events: CAPTURED_EVENTS, flushed: [], trailingBytes: 0 });
    expect(decode(bytes, byteByByte(bytes)).events).toEqual(CAPTURED_EVENTS);
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(decode(bytes, [cut]).events, `cut at ${cut}`).toEqual(CAPTURED_EVENTS);
    }
  });

  it('returns each event from the push that completes it', () => {
    const decoder = new SseDecoder();
    expect(decoder.push(Buffer.from('event: a\ndata: 1\n'))).toEqual([]);
    expect(decoder.push(Buffer.from('\nevent: b\ndata: 2\n\nevent: c\n'))).toEqual([
      { type: 'a', data: '1' },
      { type: 'b', data: '2' },
    ]);
    expect(decoder.push(Buffer.from('data: 3\n\n'))).toEqual([{ type: 'c', data: '3' }]);
    expect(decoder.end()).toEqual({ events: [], trailingBytes: 0 });
  });

  it.each([
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('decodes %s line endings as LF ones, at every cut', (_name, eol) => {
    const bytes = Buffer.from(CAPTURED.replaceAll('\n', eol));
    expect(decode(bytes)).toEqual({ events: CAPTURED_EVENTS, flushed: [], trailingBytes: 0 });
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { events, trailingBytes } = decode(bytes, [cut]);
      expect(events, `cut at ${cut}`).toEqual(CAPTURED_EVENTS);
      expect(trailingBytes, `cut at ${cut}`).toBe(0);
    }
  });

  it('takes a CR ending one chunk and an LF opening the next as one line ending, not two', () => {
    const decoder = new SseDecoder();
    expect(decoder.push(Buffer.from('data: a\r'))).toEqual([]);
    // Were the LF a second line ending, this would be a blank line dispatching `a` on its own.
    expect(decoder.push(Buffer.from('\ndata: b\r'))).toEqual([]);
    expect(decoder.push(Buffer.from('\n\r'))).toEqual([{ type: 'message', data: 'a\nb' }]);
    expect(decoder.push(Buffer.from('\n'))).toEqual([]);
    expect(decoder.end()).toEqual({ events: [], trailingBytes: 0 });
  });

  it('dispatches on a CR at once, without waiting to see whether an LF follows', () => {
    const decoder = new SseDecoder();
    expect(decoder.push(Buffer.from('data: now\r\r'))).toEqual([{ type: 'message', data: 'now' }]);
  });

  it('mixes line endings within one stream', () => {
    const { events } = decode(Buffer.from('event: x\rdata: 1\r\ndata: 2\n\r\ndata: 3\r\r'));
    expect(events).toEqual([
      { type: 'x', data: '1\n2' },
      { type: 'message', data: '3' },
    ]);
  });

  it('joins data lines with LF, keeping empty ones', () => {
    const { events } = decode(Buffer.from('data: first\ndata:\ndata: third\n\ndata\n\ndata:\n\n'));
    expect(events).toEqual([
      { type: 'message', data: 'first\n\nthird' },
      { type: 'message', data: '' },
      { type: 'message', data: '' },
    ]);
  });

  it('drops exactly one space after the colon', () => {
    const { events } = decode(Buffer.from('data:x\n\ndata: x\n\ndata:  x\n\nevent:  spaced\ndata\n\n'));
    expect(events).toEqual([
      { type: 'message', data: 'x' },
      { type: 'message', data: 'x' },
      { type: 'message', data: ' x' },
      { type: ' spaced', data: '' },
    ]);
  });

  it('ignores comments, retry and unknown fields, and does not dispatch an event without data', () => {
    const stream = [
      ': keep-alive',
      ':',
      'retry: 3000',
      'unknown: field',
      'event: ignored',
      '',
      'Data: wrong case',
      '',
      'data: kept',
      ': comment inside an event',
      '',
      '',
    ].join('\n');
    // The `event: ignored` block has no data, so it is dropped and its type does not leak into the next event.
    expect(decode(Buffer.from(stream)).events).toEqual([{ type: 'message', data: 'kept' }]);
  });

  it('decodes multi-byte UTF-8 characters split across chunks at every offset', () => {
    const text = 'emoji 🌤️👩‍💻 CJK 巴黎天气 accents éàü';
    const bytes = Buffer.from(`event: délta\ndata: ${text}\nid: ✓\n\n`);
    const expected = [{ type: 'délta', data: text, id: '✓' }];
    expect(decode(bytes, byteByByte(bytes)).events).toEqual(expected);
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(decode(bytes, [cut]).events, `cut at ${cut}`).toEqual(expected);
    }
  });

  it('replaces invalid UTF-8 with U+FFFD, as the spec decodes', () => {
    const bytes = Buffer.concat([Buffer.from('data: a'), Buffer.from([0xff, 0xc3]), Buffer.from('\n\n')]);
    expect(decode(bytes).events).toEqual([{ type: 'message', data: 'a\uFFFD\uFFFD' }]);
  });

  it('skips one UTF-8 BOM opening the stream, even split across chunks, and only there', () => {
    const bytes = Buffer.from('\uFEFFdata: a\n\n\uFEFFdata: b\n\n');
    const expected = [{ type: 'message', data: 'a' }]; // the second BOM makes an unknown field name
    expect(decode(bytes).events).toEqual(expected);
    expect(decode(bytes, [1, 2]).events).toEqual(expected);
  });

  it('carries the last event ID on to later events, until an id line changes or clears it', () => {
    const stream = 'id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\nid: 3\n\ndata: e\n\n';
    expect(decode(Buffer.from(stream)).events).toEqual([
      { type: 'message', data: 'a', id: '1' },
      { type: 'message', data: 'b', id: '1' },
      { type: 'message', data: 'c', id: '1' }, // an id holding NULL is ignored
      { type: 'message', data: 'd' },
      { type: 'message', data: 'e', id: '3' }, // set by an event that had no data
    ]);
  });

  describe('end', () => {
    it('discards an event the stream cut before its blank line, and counts its bytes', () => {
      const complete = 'event: a\ndata: 1\n\n';
      const cut = 'event: b\ndata: 2\ndata: 3';
      const result = decode(Buffer.from(complete + cut));
      expect(result.events).toEqual([{ type: 'a', data: '1' }]);
      expect(result.trailingBytes).toBe(Buffer.byteLength(cut));
    });

    it('counts trailing bytes even when the cut falls on a line end', () => {
      const result = decode(Buffer.from('data: 1\n\ndata: 2\n'));
      expect(result.events).toEqual([{ type: 'message', data: '1' }]);
      expect(result.trailingBytes).toBe(8);
    });

    it('with flushIncomplete, returns the cut event, including a last line with no line ending', () => {
      const result = decode(Buffer.from('data: 1\n\nevent: b\ndata: 2\ndata: 3'), [20], { flushIncomplete: true });
      expect(result.events).toEqual([
        { type: 'message', data: '1' },
        { type: 'b', data: '2\n3' },
      ]);
      expect(result.flushed).toEqual([{ type: 'b', data: '2\n3' }]);
      expect(result.trailingBytes).toBe(24);
    });

    it('with flushIncomplete, returns nothing for a cut that left no data', () => {
      expect(decode(Buffer.from('data: 1\n\nevent: b\n: note'), [], { flushIncomplete: true }).flushed).toEqual([]);
    });

    it('resets the decoder for another stream', () => {
      const decoder = new SseDecoder();
      decoder.push(Buffer.from('id: 7\nevent: x\ndata: cut'));
      expect(decoder.end()).toEqual({ events: [], trailingBytes: 24 });
      expect(decoder.push(Buffer.from('data: fresh\n\n'))).toEqual([{ type: 'message', data: 'fresh' }]);
      expect(decoder.end()).toEqual({ events: [], trailingBytes: 0 });
    });
  });

  it('does not keep a reference to a chunk the caller may reuse', () => {
    const decoder = new SseDecoder();
    const chunk = Buffer.from('data: hello');
    decoder.push(chunk);
    chunk.fill(0x78); // the proxy's buffer, reused for the next read
    expect(decoder.push(Buffer.from('\n\n'))).toEqual([{ type: 'message', data: 'hello' }]);
  });

  it('decodes any serialised event sequence the same however it is split (property)', () => {
    const lineText = fc
      .oneof(fc.string({ unit: 'binary' }), fc.string(), fc.constantFrom('🌤️', '巴黎', ' lead', 'é', ':colon'))
      .map((s) => s.replace(/[\r\n]/g, ''));
    const frame = fc.record({
      type: fc.option(
        lineText.filter((s) => s !== ''),
        { nil: undefined },
      ),
      // `null` is a frame without data: not dispatched, but its id still counts.
      data: fc.option(fc.array(lineText, { minLength: 1, maxLength: 3 }), { nil: null }),
      id: fc.option(
        lineText.map((s) => s.replaceAll('\0', '')),
        { nil: undefined },
      ),
      noise: fc.array(fc.constantFrom(': keep-alive', ':', 'retry: 1000', 'other: x', 'other'), { maxLength: 2 }),
      spaceAfterColon: fc.boolean(),
    });
    const streamArb = fc.record({
      frames: fc.array(frame, { maxLength: 8 }),
      endings: fc.array(fc.constantFrom('\n', '\r\n', '\r'), { minLength: 1, maxLength: 5 }),
      cuts: fc.array(fc.nat(), { maxLength: 12 }),
    });

    fc.assert(
      fc.property(streamArb, ({ frames, endings, cuts }) => {
        const lines: string[] = [];
        const expected: SseEvent[] = [];
        let lastId = '';
        for (const f of frames) {
          const field = (name: string, value: string): string =>
            // A value opening with a space needs the separator space, or the decoder rightly drops its own.
            `${name}:${f.spaceAfterColon || value.startsWith(' ') ? ' ' : ''}${value}`;
          lines.push(...f.noise);
          if (f.type !== undefined) lines.push(field('event', f.type));
          if (f.id !== undefined) lines.push(field('id', f.id));
          for (const line of f.data ?? []) lines.push(field('data', line));
          lines.push('');
          if (f.id !== undefined) lastId = f.id;
          if (f.data !== null) {
            const event = { type: f.type ?? 'message', data: f.data.join('\n') };
            expected.push(lastId === '' ? event : { ...event, id: lastId });
          }
        }
        let text = '';
        let previous = '';
        lines.forEach((line, i) => {
          let eol = endings[i % endings.length]!;
          // After a CR, an empty line ended by LF alone would read as the LF of a CRLF: pick CRLF for it instead.
          if (previous === '\r' && line === '' && eol === '\n') eol = '\r\n';
          text += line + eol;
          previous = eol;
        });
        const bytes = Buffer.from(text);
        const offsets = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const result = decode(bytes, offsets);
        expect(result.events).toEqual(expected);
        expect(result.trailingBytes).toBe(0);
      }),
      { numRuns: 500 },
    );
  });
});
