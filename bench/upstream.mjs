/**
 * The fake Anthropic upstream in a process of its own, so its CPU is not charged to the proxy under test or to the
 * load generator. Prints `fake upstream on <url>` when ready; stops on SIGTERM.
 */
import { startFakeAnthropic } from '../dist/sandbox/fake-anthropic.js';

// Holding every ~40 KB request would grow to gigabytes over a run.
const fake = await startFakeAnthropic({ recordRequests: false });
process.stdout.write(`fake upstream on ${fake.url}\n`);
process.once('SIGTERM', () => void fake.close().finally(() => process.exit(0)));
