/**
 * Claude Code (through the Claude Agent SDK) runs a multi-turn, tool-using session through the gateway: the agent
 * works unchanged, and the whole session is recorded as one session, event by event, without any credential.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAgent } from '../support/agent.js';
import { CLIENT_KEY, GATEWAY_KEY, filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
let workDir: string;

beforeAll(async () => {
  h = await startHarness();
  workDir = mkdtempSync(path.join(tmpdir(), 'vigil-agent-'));
});
afterAll(async () => {
  await h?.close();
  rmSync(workDir, { recursive: true, force: true });
});

describe('Claude Agent SDK through the gateway', () => {
  it('runs a tool-using session and records it whole', async () => {
    const messages = await runAgent(h.url, 'Run this for me [[tool:Bash {"command":"echo hi-from-bash"}]]', workDir);
    const result = messages.find((m) => m.type === 'result');
    expect(result).toMatchObject({ subtype: 'success' });
    expect((result as { result?: string }).result).toContain('Tool result received: hi-from-bash');

    // Claude Code names its session; the gateway groups by it.
    const sessionId = (messages.find((m) => m.type === 'system') as { session_id: string }).session_id;
    const upstreamCalls = h.fake.requests.filter((r) => r.path === '/v1/messages');
    expect(upstreamCalls.length).toBeGreaterThanOrEqual(2);
    expect(upstreamCalls.every((r) => r.headers['x-api-key'] === GATEWAY_KEY)).toBe(true);
    const recordedSession = upstreamCalls[0]!.headers['x-claude-code-session-id'] as string;
    expect(recordedSession).toBe(sessionId);

    const xs = await h.session(sessionId, upstreamCalls.length);
    expect(xs.length).toBe(upstreamCalls.length);
    expect(xs.every((x) => x.outcome === 'ok' && x.request.query === 'beta=true')).toBe(true);

    // Turn 1: the model asked for Bash; the stream's events and the assembled tool call are both kept.
    const toolTurn = xs.find(
      (x) => (x.response.message as { stop_reason?: string } | null)?.stop_reason === 'tool_use',
    )!;
    expect(toolTurn).toBeDefined();
    const toolUse = (
      toolTurn.response.message as { content: Array<{ type: string; name?: string; input?: unknown }> }
    ).content.find((b) => b.type === 'tool_use');
    expect(toolUse).toMatchObject({ name: 'Bash', input: { command: 'echo hi-from-bash' } });
    expect(toolTurn.response.events.filter((e) => e.type === 'content_block_delta').length).toBeGreaterThan(1);

    // Turn 2: Claude Code sent the tool's real output back; the request body is recorded as sent.
    const last = xs.at(-1)!;
    expect(JSON.stringify(last.request.body)).toContain('hi-from-bash');
    const sentLast = JSON.parse(upstreamCalls.at(-1)!.body.toString()) as unknown;
    expect(last.request.body).toEqual(sentLast);
    expect(last.request.body_size).toBeGreaterThan(20_000); // Claude Code's system prompt and tools

    await h.gateway.recorder.queue.flush();
    expect(filesContaining(h.dataDir, CLIENT_KEY)).toEqual([]);
    expect(filesContaining(h.dataDir, GATEWAY_KEY)).toEqual([]);
    expect((await h.gateway.store.verify()).ok).toBe(true);
  }, 120_000);

  it('stops an agent over its usage limit at once, with the gateway’s reason, asking no more', async () => {
    // One call a day: the agent's first turn (which asks for the tool) goes through, the second is refused.
    const limited = await startHarness((upstream) => ({
      connections: [
        {
          name: 'anthropic',
          upstream,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          limits: [{ name: 'daily', window: '1d', requests: 1 }],
        },
      ],
    }));
    try {
      const run = runAgent(limited.url, 'Run this for me [[tool:Bash {"command":"echo over-the-limit"}]]', workDir);
      await expect(run).rejects.toThrow(
        /429.*usage limit "daily" reached: anonymous callers used 1 of 1 calls in the last 1d; calls are admitted again from /,
      );
      expect(limited.fake.requests.filter((r) => r.path === '/v1/messages')).toHaveLength(1);
      // Claude Code asked once and stopped: no retries for the rest of the day, each refused and recorded.
      await limited.gateway.recorder.queue.flush();
      const refused = await limited.gateway.store.recordsOfKinds(['access.denied'], 0, 100);
      expect(refused.map((r) => (JSON.parse(r.data) as { status: number }).status)).toEqual([429]);
    } finally {
      await limited.close();
    }
  }, 120_000);
});
