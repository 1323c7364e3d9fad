import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileMasker } from '../../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../../src/recorder/masking/masking-config.js';

const masker = compileMasker(maskingConfigSchema.parse({}));

/**
 * Words, code tokens and numbers an agent conversation is full of, none of which is a secret or personal data.
 * Assignment operators are left out on purpose: `password : a1b2c3d` *is* a password assignment.
 */
const SAFE_WORDS = [
  'the',
  'read',
  'file',
  'function',
  'const',
  'return',
  'await',
  'import',
  'from',
  'export',
  'class',
  'interface',
  'password',
  'token',
  'secret',
  'key',
  'api_key',
  'max_tokens',
  'input_tokens',
  'string',
  'number',
  'null',
  'true',
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ';',
  ',',
  '.',
  '"',
  "'",
  '`',
  '-',
  '+',
  '/',
  '*',
  '@',
  '42',
  '2024-06-11',
  'v1.2.3',
  '3.14',
  '8080',
  '127.0.0.1',
  'localhost',
  'src/index.ts',
  'npm',
  'run',
  'test',
  'node_modules',
  'README.md',
  'TODO',
  'fix',
  'bug',
  'git',
  'commit',
  'a1b2c3d',
  'http://localhost:3000',
  'user',
  'name',
  'type',
  'object',
  'properties',
  'description',
  'required',
  'error',
  'Error',
  'sk',
  'hf',
  'AKIA',
  'eyJ',
  '-----BEGIN',
  'Bearer',
  'AccountKey',
  '::',
  '0.5',
  '100%',
  '#1234',
  '\n',
  '  ',
];

describe('text made of safe words', () => {
  it('is never changed by maskText', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...SAFE_WORDS), { maxLength: 80 }),
        fc.constantFrom(' ', '\n', ' \n'),
        (words, sep) => {
          const text = words.join(sep);
          const r = masker.maskText(text);
          expect(r.value).toBe(text);
          expect(r.changed).toBe(false);
        },
      ),
      { numRuns: 5000 },
    );
  });
});
