import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: e2e tests spawn gateways and agent processes; keep parallelism modest.
    maxWorkers: 2,
    reporters: ['default'],
    // The Claude Agent SDK (0.3.x) rejects a run that ends in an error result twice: through the query's iterator,
    // which the tests await and assert on, and through any control request still pending at that moment, which
    // nothing can await (its promise is internal to the SDK). Only that second copy is ignored; the first still fails
    // whatever did not expect it.
    onUnhandledError(error) {
      const e = error as Error & { errorClass?: unknown };
      if (e.errorClass === 'error_result' && e.message.startsWith('Claude Code returned an error result')) return false;
    },
  },
});
