/**
 * Measures how late a timer every `intervalMs` runs until `stop()`, which returns the worst delay between two ticks
 * (ms): how long this thread's event loop was held at a time. A timer held up by synchronous work fires once the work
 * is done, so let the loop turn once (await a short timeout) after the work before stopping.
 */
export function eventLoopLag(intervalMs = 10): { stop: () => number } {
  let worst = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    worst = Math.max(worst, performance.now() - last);
    last = performance.now();
  }, intervalMs);
  return {
    stop: () => {
      clearInterval(ticker);
      return worst;
    },
  };
}
