/** Types of prng.mjs, for the tests that import it. */
export declare function mulberry32(seed: number): () => number;
