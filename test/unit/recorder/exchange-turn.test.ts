/** What a transcript shows as the turn an exchange added: every message after the last assistant message. */
import { describe, expect, it } from 'vitest';
import { centsText, newMessages, usageLine } from '../../../src/recorder/exchange-turn.js';

const role = (m: { role: string }) => m.role;
const msgs = (...roles: string[]) => roles.map((r, i) => ({ role: r, i }));

describe('newMessages', () => {
  it('is every message of a first turn, not its last: Claude Code puts the environment after the prompt', () => {
    // Went wrong: the last message alone stood for the turn, so the prompt of `claude -p "say hi"` was not shown.
    expect(newMessages(msgs('user', 'system'), role).map((m) => m.i)).toEqual([0, 1]);
  });

  it('is what follows the last assistant message: tool results, not the resent history', () => {
    expect(newMessages(msgs('user', 'assistant', 'user', 'assistant', 'user'), role).map((m) => m.i)).toEqual([4]);
    expect(newMessages(msgs('user', 'assistant', 'user', 'system'), role).map((m) => m.i)).toEqual([2, 3]);
  });

  it('keeps a prefill the client wrote (an assistant message last) with the turn it ends', () => {
    expect(newMessages(msgs('user', 'assistant', 'user', 'assistant'), role).map((m) => m.i)).toEqual([2, 3]);
    expect(newMessages(msgs('user', 'assistant'), role).map((m) => m.i)).toEqual([0, 1]);
  });

  it('is nothing for no messages', () => {
    expect(newMessages([], role)).toEqual([]);
  });
});

describe('usageLine', () => {
  it('counts all input, with the cache part of it, as the totals and reports do', () => {
    expect(
      usageLine({
        input_tokens: 386,
        cache_read_input_tokens: 1155,
        cache_creation_input_tokens: 2000,
        output_tokens: 2,
      }),
    ).toBe('in 3,541 (of which cache reads 1,155, writes 2,000) · out 2');
    expect(usageLine({ input_tokens: 10, output_tokens: 5 })).toBe('in 10 · out 5');
    // Recorded JSON holds what upstream sent: a count that is not a number counts as 0.
    expect(usageLine({ input_tokens: '7', cache_read_input_tokens: null, output_tokens: 3 })).toBe('in 0 · out 3');
  });
});

describe('centsText', () => {
  it('shows a cost to the cent, and a cost under a cent as such rather than as nothing', () => {
    expect(centsText(4.129)).toBe('4.13');
    expect(centsText(0.0049)).toBe('<0.01');
    expect(centsText(0)).toBe('0.00');
  });
});
