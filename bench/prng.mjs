/**
 * mulberry32: a tiny deterministic PRNG, so generated data is the same on every run and a failure names a seed that
 * reproduces it. Here, in plain JavaScript, so the bench (run under plain Node against dist) and the tests share it.
 *
 * @param {number} seed
 * @returns {() => number} numbers in [0, 1)
 */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
