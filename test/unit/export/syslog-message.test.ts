import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import {
  escapeParamValue,
  formatSyslogMessage,
  octetCountedFrame,
  type SyslogMessageOptions,
} from '../../../src/export/syslog-message.js';
import { parseStructuredData } from '../../support/rsyslog.js';
import { deniedEvent, exchangeEvent, verifyFailedEvent } from '../../support/sample-audit-events.js';

const OPTS: SyslogMessageOptions = {
  facility: 'authpriv',
  appName: 'vigil',
  hostname: 'gw-host-1',
  procId: '4242',
  maxBytes: 8192,
};

/** Splits `<PRI>1 TS HOST APP PROCID MSGID SD MSG` where SD is one element (as Vigil sends). */
function parts(message: Buffer): { header: string; sd: string; msg: string } {
  const text = message.toString('utf8');
  const m = /^(<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+) (\[(?:[^"\]]|"(?:[^"\\]|\\.)*")*\]) (.*)$/s.exec(text);
  if (!m) throw new Error(`not an RFC 5424 message with one SD element: ${text}`);
  return { header: m[1]!, sd: m[2]!, msg: m[3]! };
}

describe('formatSyslogMessage', () => {
  it('writes the exact RFC 5424 header, SD element and JSON MSG', () => {
    const e = exchangeEvent(1);
    const text = formatSyslogMessage(e, OPTS).toString('utf8');
    expect(text).toBe(
      '<86>1 2025-06-01T12:00:01.123456Z gw-host-1 vigil 4242 exchange.completed ' +
        '[vigil@32473 id="evt-0001" type="exchange.completed" subject="alice@example.com" connection="anthropic" ' +
        `session="sess-42" exchange="ex-1"] ${JSON.stringify(e)}`,
    );
  });

  it('maps severity and facility into PRI', () => {
    const pri = (e: AuditEvent, facility: SyslogMessageOptions['facility']): string =>
      /^<(\d+)>/.exec(formatSyslogMessage(e, { ...OPTS, facility }).toString())![1]!;
    // authpriv = 10, auth = 4, local7 = 23; info = 6, warning = 4, alert = 1.
    expect(pri(exchangeEvent(), 'authpriv')).toBe('86');
    expect(pri(deniedEvent(), 'auth')).toBe('36');
    expect(pri(verifyFailedEvent(), 'local7')).toBe('185');
  });

  it('escapes ", \\ and ] in SD params and keeps MSG pure ASCII JSON', () => {
    const e = deniedEvent();
    const { header, sd, msg } = parts(formatSyslogMessage(e, OPTS));
    expect(header).toBe('<84>1 2025-06-01T12:01:00.000Z gw-host-1 vigil 4242 access.denied');
    expect(sd).toBe(
      String.raw`[vigil@32473 id="evt-0002" type="access.denied" subject="ci \"bot\" \\ [x\] é✓" connection="anthropic"]`,
    );
    expect(parseStructuredData(sd)['vigil@32473']!.subject).toBe(e.actor!.subject);
    expect(msg).toMatch(/^[\x20-\x7e]+$/);
    expect(JSON.parse(msg)).toEqual(e);
  });

  it('uses NILVALUE and printable characters where the header would otherwise break', () => {
    const e = verifyFailedEvent();
    const text = formatSyslogMessage(
      { ...e, time: 'not a time' },
      { ...OPTS, hostname: 'my host', procId: '' },
    ).toString();
    expect(
      text.startsWith('<81>1 - my_host vigil - verify.failed [vigil@32473 id="evt-0003" type="verify.failed"] {'),
    ).toBe(true);
  });

  it('shortens an oversized event so the JSON stays whole: content first, then attributes and actor', () => {
    const big = exchangeEvent(1, { content: { request: 'x'.repeat(5000) } });
    const withContent = formatSyslogMessage(big, { ...OPTS, maxBytes: 8192 });
    expect(JSON.parse(parts(withContent).msg)).toEqual(big);

    const noContent = formatSyslogMessage(big, { ...OPTS, maxBytes: 2048 });
    expect(noContent.length).toBeLessThanOrEqual(2048);
    const { content: _c, ...rest } = big;
    expect(JSON.parse(parts(noContent).msg)).toEqual({ ...rest, truncated: true });

    const hugeAttributes = exchangeEvent(1, { attributes: { reason: 'y'.repeat(3000) } });
    const core = formatSyslogMessage(hugeAttributes, { ...OPTS, maxBytes: 1024 });
    expect(core.length).toBeLessThanOrEqual(1024);
    const msg = JSON.parse(parts(core).msg) as Record<string, unknown>;
    expect(msg).toMatchObject({ id: 'evt-0001', type: 'exchange.completed', session: 'sess-42', truncated: true });
    expect('attributes' in msg || 'actor' in msg).toBe(false);
    expect(parseStructuredData(parts(core).sd)['vigil@32473']!.subject).toBe('alice@example.com');
  });
});

describe('escapeParamValue', () => {
  it('escapes exactly the three characters RFC 5424 §6.3.3 names', () => {
    expect(escapeParamValue('a"b\\c]d[e=f')).toBe('a\\"b\\\\c\\]d[e=f');
  });
});

describe('octetCountedFrame', () => {
  it('prefixes the length in bytes, not characters', () => {
    const frame = octetCountedFrame(Buffer.from('<14>1 - - - - - - é', 'utf8'));
    expect(frame.toString('utf8')).toBe('20 <14>1 - - - - - - é');
  });
});
