/**
 * Links a public Masker to its compiled scanner, so the stream masker can scan windows without the scanner being part
 * of the Masker interface the rest of the gateway sees.
 */
import type { Scanner } from '../scanner.js';

const scanners = new WeakMap<object, Scanner>();

export function registerScanner(masker: object, scanner: Scanner): void {
  scanners.set(masker, scanner);
}

/** The scanner behind a masker from compileMasker; undefined for a disabled one. */
export function scannerOf(masker: object): Scanner | undefined {
  return scanners.get(masker);
}
