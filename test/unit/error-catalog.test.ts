import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOG } from '../../api/error-catalog.js';
import { ApiError } from '../../api/errors.js';
import { LIFECYCLE_EVENTS } from '../../lib/domain.js';

describe('the error catalog', () => {
  it('gives every code a 4xx or 5xx status, and ApiError takes its status from it', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOG)) {
      expect(code).toMatch(/^[a-z_]{3,64}$/);
      expect(entry.status >= 400 && entry.status <= 599, code).toBe(true);
      expect(new ApiError(code as keyof typeof ERROR_CATALOG, 'm').status).toBe(entry.status);
    }
  });

  it("is the README's list: every code is documented there with its status", () => {
    const readme = readFileSync('README.md', 'utf8');
    const missing = Object.entries(ERROR_CATALOG).filter(([code, e]) => !readme.includes(`| \`${code}\` | ${e.status} |`));
    expect(missing.map(([code]) => code)).toEqual([]);
  });
});

describe('the lifecycle events', () => {
  it("are the README's table: every event is documented with when it is sent", () => {
    const readme = readFileSync('README.md', 'utf8');
    const missing = Object.entries(LIFECYCLE_EVENTS).filter(([type, when]) => !readme.includes(`| \`${type}\` | ${when} |`));
    expect(missing.map(([type]) => type)).toEqual([]);
  });
});
