import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/canonical-json.js';
import { normaliseBody, workingDirectory } from '../../../src/replay/volatile-fields.js';

/** The first user turn of a Claude Code request, shaped as two recorded runs sent it (trimmed). */
function claudeCodeBody(cwd: string, sessionId: string, date: string): Record<string, unknown> {
  return {
    model: 'claude-sonnet-4-5',
    system: [
      { type: 'text', text: 'x-anthropic-billing-header: cc_version=2.1.330.900; cc_entrypoint=sdk-ts;' },
      { type: 'text', text: `You are Claude Code. Started ${date}T09:00:00Z.`, cache_control: { type: 'ephemeral' } },
    ],
    messages: [
      {
        role: 'user',
        content: [
          {
            type: 'text',
            text:
              '<system-reminder>\n# Environment\nYou have been invoked in the following environment: \n' +
              ` - Primary working directory: ${cwd}\n - Is a git repository: false\n - Platform: linux\n` +
              ' - Shell: bash\n - OS Version: Linux 6.18.44\n</system-reminder>',
          },
          { type: 'text', text: `<system-reminder>\nToday's date is ${date}.\n</system-reminder>` },
          { type: 'text', text: 'Run pwd for me', cache_control: { type: 'ephemeral' } },
        ],
      },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'pwd' } }] },
      {
        role: 'user',
        content: [
          {
            type: 'tool_result',
            tool_use_id: 'toolu_1',
            content: `${cwd}\nlog at /tmp/claude/${cwd.replace(/[^A-Za-z0-9]/g, '-')}/${sessionId}/out.txt`,
          },
        ],
      },
    ],
    metadata: { user_id: JSON.stringify({ device_id: 'abc', session_id: sessionId }), other: 'kept' },
  };
}

describe('normaliseBody', () => {
  it('makes two Claude Code runs in different directories, sessions and days compare equal', () => {
    const a = claudeCodeBody('/tmp/vigil-agent-CRsQtc', '655c75f8-b5f7-4687-a6c9-5bd8d2df57de', '2026-11-23');
    const b = claudeCodeBody('/home/dev/project', '66307d6c-70bb-4add-8d5c-73eee8c645e3', '2026-11-24');
    expect(canonicalJson(a)).not.toBe(canonicalJson(b));
    expect(canonicalJson(normaliseBody(a))).toBe(canonicalJson(normaliseBody(b)));
  });

  it('shows what it masked, and leaves the input as it was', () => {
    const body = claudeCodeBody('/tmp/run-1', '655c75f8-b5f7-4687-a6c9-5bd8d2df57de', '2026-11-23');
    const before = JSON.stringify(body);
    const n = normaliseBody(body) as ReturnType<typeof claudeCodeBody> & {
      messages: Array<{ content: Array<Record<string, unknown>> }>;
    };
    expect(JSON.stringify(body)).toBe(before);
    expect(n.metadata).toEqual({ other: 'kept' });
    expect(n.messages[0]!.content[0]!.text).toContain(
      ' - Primary working directory: <volatile>\n - Is a git repository: <volatile>',
    );
    expect(n.messages[0]!.content[0]!.text).toContain(' - OS Version: <volatile>');
    expect(n.messages[0]!.content[1]!.text).toBe("<system-reminder>\nToday's date is <date>.\n</system-reminder>");
    expect(n.messages[0]!.content[2]).toEqual({ type: 'text', text: 'Run pwd for me' });
    expect(n.messages[2]!.content[0]!.content).toBe('<cwd>\nlog at /tmp/claude/<cwd>/<uuid>/out.txt');
    expect(n.system).toEqual([
      { type: 'text', text: 'x-anthropic-billing-header: cc_version=<version>; cc_entrypoint=sdk-ts;' },
      { type: 'text', text: 'You are Claude Code. Started <date>.' },
    ]);
  });

  it('keeps a date the user typed, and the tool_use ids a replayed run echoes back', () => {
    const body = { messages: [{ role: 'user', content: 'What happened on 2024-01-01?' }], metadata: { user_id: 'u' } };
    expect(normaliseBody(body)).toEqual({
      messages: [{ role: 'user', content: 'What happened on 2024-01-01?' }],
      metadata: {},
    });
    const a = normaliseBody(claudeCodeBody('/tmp/a1', 'x', '2026-01-01'));
    const b = claudeCodeBody('/tmp/a1', 'x', '2026-01-01');
    (b.messages as Array<{ content: Array<Record<string, unknown>> }>)[1]!.content[0]!.id = 'toolu_2';
    expect(canonicalJson(a)).not.toBe(canonicalJson(normaliseBody(b)));
  });

  it('cuts a git status snapshot to its label', () => {
    const sys = (branch: string) => ({
      system: `You are Claude Code.\ngitStatus: This is the git status at the start of the conversation.\nCurrent branch: ${branch}\n\nStatus:\nM src/a.ts`,
    });
    expect(normaliseBody(sys('main'))).toEqual({ system: 'You are Claude Code.\ngitStatus: <volatile>' });
    expect(normaliseBody(sys('feature/x'))).toEqual(normaliseBody(sys('main')));
  });
});

describe('workingDirectory', () => {
  it('reads the directory from the environment block, old (<env>) or new (system-reminder) style', () => {
    expect(workingDirectory(claudeCodeBody('/tmp/x-1', 'y', '2026-01-01'))).toBe('/tmp/x-1');
    expect(
      workingDirectory({ system: '<env>\nWorking directory: /home/me/repo\nIs directory a git repo: Yes\n</env>' }),
    ).toBe('/home/me/repo');
    expect(workingDirectory({ messages: [{ role: 'user', content: 'hi' }] })).toBeUndefined();
  });
});

describe('canonicalJson', () => {
  it('does not depend on key order', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: null }] })).toBe(canonicalJson({ a: [{ c: null, d: 2 }], b: 1 }));
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: '1' }));
  });
});
