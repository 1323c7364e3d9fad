/** Exchange ids: time-sortable (so listings and cursors follow time) and unguessable. */
import { randomBytes } from 'node:crypto';

export function newExchangeId(now: number = Date.now()): string {
  return `ex_${now.toString(36).padStart(9, '0')}${randomBytes(8).toString('hex')}`;
}
