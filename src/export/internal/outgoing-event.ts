import type { AuditEvent } from '../audit-event.js';

/** The event as a sink sends it: masked content only where the sink opted in with `include_content: true`. */
export function outgoingEvent(event: AuditEvent, includeContent: boolean): AuditEvent {
  if (includeContent || event.content === undefined) return event;
  const { content: _content, ...rest } = event;
  return rest;
}

/** The event sent without its content, `content.omitted` saying why (too large for a body, refused by the receiver, …). */
export function withoutContent(event: AuditEvent, why: string): AuditEvent {
  return { ...event, content: { omitted: why } };
}
