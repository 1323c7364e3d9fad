/** Types of small-exchange.mjs, for the tests that import it. */
import type { NewRecord } from '../src/store/audit-store.js';

export declare function smallExchange(i: number, t0: number, connection?: string): NewRecord[];
