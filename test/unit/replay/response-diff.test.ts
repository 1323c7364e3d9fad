import { describe, expect, it } from 'vitest';
import { diffLines, renderDiff } from '../../../src/replay/line-diff.js';
import { diffResponses } from '../../../src/replay/response-diff.js';

const message = (content: unknown[], extra: Record<string, unknown> = {}) => ({
  id: 'msg_recorded',
  type: 'message',
  role: 'assistant',
  model: 'claude-test',
  content,
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 10, output_tokens: 5 },
  ...extra,
});

describe('diffResponses', () => {
  it('finds nothing when only the ids the API mints afresh differ', () => {
    const a = message([
      { type: 'text', text: 'hi' },
      { type: 'tool_use', id: 'toolu_a', name: 'Bash', input: { command: 'ls' } },
    ]);
    const b = {
      ...message([
        { type: 'text', text: 'hi' },
        { type: 'tool_use', id: 'toolu_b', name: 'Bash', input: { command: 'ls' } },
      ]),
      id: 'msg_new',
    };
    expect(diffResponses({ status: 200, message: a }, { status: 200, message: b })).toEqual({
      same: true,
      changes: [],
      text: '',
    });
  });

  it('diffs text line by line, with context, and lists each change', () => {
    const lines = ['Plan:', '1. read', '2. think', '3. write', '4. test', '5. ship'];
    const a = message([{ type: 'text', text: lines.join('\n') }]);
    const b = message([{ type: 'text', text: lines.map((l) => (l === '4. test' ? '4. test twice' : l)).join('\n') }], {
      stop_reason: 'max_tokens',
      usage: { input_tokens: 10, output_tokens: 7 },
    });
    const diff = diffResponses({ status: 200, message: a }, { status: 200, message: b });
    expect(diff.same).toBe(false);
    expect(diff.text).toBe(
      [
        '--- recorded',
        '+++ resent',
        '@@ content[0] text @@',
        '…',
        ' 2. think',
        ' 3. write',
        '-4. test',
        '+4. test twice',
        ' 5. ship',
        '@@ stop_reason @@',
        '-end_turn',
        '+max_tokens',
        '@@ usage.output_tokens @@',
        '-5',
        '+7',
        '',
      ].join('\n'),
    );
    expect(diff.changes).toEqual([
      { kind: 'content', index: 0, change: 'changed', recorded: lines, resent: expect.any(Array) },
      { kind: 'stop_reason', recorded: 'end_turn', resent: 'max_tokens' },
      { kind: 'usage', field: 'output_tokens', recorded: 5, resent: 7 },
    ]);
  });

  it('shows a tool call by name and input, and an added block', () => {
    const a = message([{ type: 'tool_use', id: 't1', name: 'Bash', input: { command: 'ls' } }]);
    const b = message([
      { type: 'tool_use', id: 't2', name: 'Read', input: { path: 'a.txt' } },
      { type: 'text', text: 'done' },
    ]);
    expect(diffResponses({ status: 200, message: a }, { status: 200, message: b }).text).toBe(
      [
        '--- recorded',
        '+++ resent',
        '@@ content[0] tool_use Bash → tool_use Read @@',
        '-tool_use Bash',
        '+tool_use Read',
        ' {',
        '-  "command": "ls"',
        '+  "path": "a.txt"',
        ' }',
        '@@ content[1] (none) → text @@',
        '+done',
        '',
      ].join('\n'),
    );
  });

  it('reports an error answer in place of a message', () => {
    const diff = diffResponses(
      { status: 200, message: message([{ type: 'text', text: 'hi' }]) },
      { status: 529, message: null, error: { type: 'overloaded_error', message: 'Overloaded' } },
    );
    expect(diff.changes.map((c) => c.kind)).toEqual([
      'status',
      'error',
      'model',
      'content',
      'stop_reason',
      'usage',
      'usage',
    ]);
    expect(diff.text).toContain('@@ status @@\n-200\n+529\n@@ error @@\n-(none)\n+overloaded_error: Overloaded\n');
  });
});

describe('diffLines', () => {
  it('keeps common lines and marks the rest', () => {
    expect(renderDiff(diffLines(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd', 'e']))).toEqual([
      ' a',
      '-b',
      '+x',
      ' c',
      ' d',
      '+e',
    ]);
    expect(renderDiff(diffLines([], ['new']))).toEqual(['+new']);
    expect(renderDiff(diffLines(['same'], ['same']))).toEqual([' same']);
  });
});
