/** What a transcript shows as the turn an exchange added: every message after the last assistant message. */
import { describe, expect, it } from 'vitest';
import { newMessages } from '../../../src/recorder/exchange-turn.js';

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
