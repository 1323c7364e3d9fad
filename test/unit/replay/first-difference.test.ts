import { describe, expect, it } from 'vitest';
import { firstDifference } from '../../../src/replay/first-difference.js';

describe('firstDifference', () => {
  it('is null for values equal as JSON, whatever their key order', () => {
    expect(firstDifference({ a: [1, { b: 'x', c: null }] }, { a: [1, { c: null, b: 'x' }] })).toBeNull();
  });

  it('names the path of the first differing string, with excerpts around the first differing character', () => {
    const long = 'The quick brown fox jumps over the lazy dog, then naps for a while in the afternoon sun.';
    const d = firstDifference(
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'user', content: [{ type: 'text', text: long }] },
        ],
      },
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'user', content: [{ type: 'text', text: long.replace('naps', 'runs') }] },
        ],
      },
    );
    expect(d).toEqual({
      path: 'messages[1].content[0].text',
      detail:
        "recorded text '… the lazy dog, then naps for a while in …', got '… the lazy dog, then runs for a while in …'",
    });
  });

  it('reports a missing or extra item, and says how long each array is', () => {
    expect(firstDifference({ messages: ['a'] }, { messages: ['a', { role: 'user' }] })).toEqual({
      path: 'messages[1]',
      detail: 'recorded nothing, got object {"role":"user"} (recorded 1 items, got 2)',
    });
    expect(firstDifference({ tools: [] }, {})).toEqual({ path: 'tools', detail: 'recorded array [], got nothing' });
    expect(firstDifference({ a: 1 }, { a: 1, 'odd key': true })).toEqual({
      path: '["odd key"]',
      detail: 'recorded nothing, got true',
    });
  });

  it('shows newlines escaped, so the message stays on one line', () => {
    expect(firstDifference('a\nb', 'a\nc')?.detail).toBe("recorded text 'a\\nb', got 'a\\nc'");
  });

  it('uses the string comparison it is given', () => {
    const loose = (r: string, g: string) => r.toLowerCase() === g.toLowerCase();
    expect(firstDifference({ t: 'Hello' }, { t: 'hello' }, loose)).toBeNull();
    expect(firstDifference({ max_tokens: 100 }, { max_tokens: 200 })).toEqual({
      path: 'max_tokens',
      detail: 'recorded 100, got 200',
    });
  });
});
