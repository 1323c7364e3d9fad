import { describe, expect, it } from 'vitest';
import { ibanValid, luhnValid, plausibleCardNumber, ssnValid } from '../../../../src/recorder/masking/checksums.js';
import { shannonEntropy } from '../../../../src/recorder/masking/entropy.js';
import { isSecretValue } from '../../../../src/recorder/masking/secret-value.js';

describe('check digits', () => {
  it('Luhn accepts test card numbers and rejects a changed digit', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('378282246310005')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid('')).toBe(false);
  });

  it('card plausibility needs a scheme prefix and length', () => {
    expect(plausibleCardNumber('4111111111111111')).toBe(true);
    expect(plausibleCardNumber('1111111111111117')).toBe(false);
    expect(plausibleCardNumber('411111111111111')).toBe(false); // Visa is 13, 16 or 19 digits
  });

  it('IBAN mod-97 and country length', () => {
    expect(ibanValid('DE89370400440532013000')).toBe(true);
    expect(ibanValid('GB82WEST12345698765432')).toBe(true);
    expect(ibanValid('DE89370400440532013001')).toBe(false);
    expect(ibanValid('DE8937040044053201300')).toBe(false); // too short for DE
    expect(ibanValid('ZZ89370400440532013000')).toBe(false);
  });

  it('SSN ranges that were never issued', () => {
    expect(ssnValid('536', '22', '8745')).toBe(true);
    for (const [a, g, s] of [
      ['000', '12', '3456'],
      ['666', '12', '3456'],
      ['900', '12', '3456'],
      ['536', '00', '1234'],
      ['536', '22', '0000'],
    ]) {
      expect(ssnValid(a!, g!, s!)).toBe(false);
    }
  });
});

describe('entropy and the generic-secret decision', () => {
  it('measures bits per character', () => {
    expect(shannonEntropy('aaaa')).toBe(0);
    expect(shannonEntropy('abcd')).toBe(2);
  });

  it('masks passwords whatever their entropy, but not placeholders or code', () => {
    expect(isSecretValue('hunter2', true, false)).toBe(true);
    expect(isSecretValue('letmein2024', true, true)).toBe(true);
    expect(isSecretValue('changeme', true, true)).toBe(false);
    expect(isSecretValue('${DB_PASSWORD}', true, false)).toBe(false);
    expect(isSecretValue('newPassword', true, false)).toBe(false); // a variable in code
    expect(isSecretValue('config.db.password', true, false)).toBe(false);
  });

  it('needs randomness for tokens and keys', () => {
    expect(isSecretValue('9fK2xQ7LmP4rT8vW', false, true)).toBe(true);
    expect(isSecretValue('bearer', false, true)).toBe(false);
    expect(isSecretValue('my token here', false, true)).toBe(false);
    expect(isSecretValue('123456789012345', false, true)).toBe(false);
  });
});
