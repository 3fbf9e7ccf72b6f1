import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CATALOG } from '../../api/error-catalog.js';
import { startHarness, type Harness } from '../support/harness.js';

const CHROMIUM = '/usr/bin/chromium';
let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

describe('the published contract', () => {
  it('serves an OpenAPI 3.1 document with every error code and every area of the API', async () => {
    const res = await fetch(`${h.baseUrl}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { operationId: string }>>; components: any };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.schemas.Error.properties.error.properties.code.enum.sort()).toEqual(Object.keys(ERROR_CATALOG).sort());
    const paths = Object.keys(doc.paths);
    for (const prefix of [
      '/api/v1/credentials/',
      '/api/v1/tools',
      '/api/v1/mcp/',
      '/api/v1/proxy/',
      '/api/v1/webhooks',
      '/api/v1/me/connections',
      '/api/v1/admin/',
      '/api/v1/auth/tool/start',
      '/api/v1/auth/tool/callback',
      '/healthz',
      '/readyz',
      '/metrics',
      '/codec/',
    ])
      expect(
        paths.some((p) => p.startsWith(prefix)),
        prefix,
      ).toBe(true);
    const ids = Object.values(doc.paths).flatMap((item) => Object.values(item).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.skipIf(!existsSync(CHROMIUM))('renders its reference page offline: nothing is fetched from another origin', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const elsewhere: string[] = [];
      await page.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith(h.baseUrl) || url.startsWith('data:')) return route.continue();
        elsewhere.push(url);
        return route.abort();
      });
      await page.goto(`${h.baseUrl}/docs`);
      // Swagger UI, from the npm package, lists every operation of the document.
      await page.waitForSelector('.opblock', { timeout: 30_000 });
      expect(await page.locator('.opblock').count()).toBeGreaterThan(30);
      expect(await page.textContent('body')).toContain('/api/v1/credentials/{toolId}');
      await page.screenshot({ path: 'test-artifacts/api-reference.png' });
      expect(elsewhere).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
