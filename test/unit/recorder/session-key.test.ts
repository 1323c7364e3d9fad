import { describe, expect, it } from 'vitest';
import { resolveAgent, resolveSession, sessionFromUserId } from '../../../src/recorder/session-key.js';

describe('resolveSession', () => {
  const body = { metadata: { user_id: 'user_0f3a_account_11111111-2222_session_aaaa-bbbb' } };

  it('prefers x-vigil-session, then Claude Code’s header, then metadata.user_id, then a new session', () => {
    expect(resolveSession({ 'x-vigil-session': 'mine', 'x-claude-code-session-id': 'cc' }, body, 'gen')).toEqual({
      id: 'mine',
      source: 'header',
    });
    expect(resolveSession({ 'x-claude-code-session-id': 'cc' }, body, 'gen')).toEqual({
      id: 'cc',
      source: 'claude-code',
    });
    expect(resolveSession({}, body, 'gen')).toEqual({ id: 'aaaa-bbbb', source: 'metadata' });
    expect(resolveSession({}, {}, 'gen')).toEqual({ id: 'gen', source: 'generated' });
  });

  it('ignores header values that are not safe ids', () => {
    expect(resolveSession({ 'x-vigil-session': 'has space' }, undefined, 'gen').source).toBe('generated');
    expect(resolveSession({ 'x-vigil-session': 'x'.repeat(300) }, undefined, 'gen').source).toBe('generated');
    // Dot segments: `/sessions/..` resolves to `/`, so such a session could never be opened by id.
    expect(resolveSession({ 'x-vigil-session': '..' }, undefined, 'gen').source).toBe('generated');
    expect(resolveSession({ 'x-vigil-session': '.' }, undefined, 'gen').source).toBe('generated');
    expect(resolveSession({ 'x-vigil-session': '...' }, undefined, 'gen').id).toBe('...');
  });

  it('reads the JSON form of metadata.user_id', () => {
    expect(sessionFromUserId(JSON.stringify({ device_id: 'd', session_id: 's-1' }))).toBe('s-1');
    expect(sessionFromUserId('plain-user')).toBeUndefined();
    expect(sessionFromUserId(42)).toBeUndefined();
  });

  it('records subagent ids when present', () => {
    expect(resolveAgent({ 'x-claude-code-agent-id': 'a1', 'x-claude-code-parent-agent-id': 'p1' })).toEqual({
      id: 'a1',
      parentId: 'p1',
    });
    expect(resolveAgent({})).toBeUndefined();
  });
});
