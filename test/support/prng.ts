/**
 * mulberry32: a tiny deterministic PRNG, so generated test data is the same on every run and a failure names a seed
 * that reproduces it. (bench/workload.mjs keeps its own copy: it runs under plain Node, outside the test build.)
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
