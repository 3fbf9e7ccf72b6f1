import express, { type Express } from 'express';
import { pathToFileURL } from 'node:url';

/**
 * The token-fetch baseline: a bare Express route returning constant JSON of the same shape as an issued
 * credential. `npm run bench` serves it in its own process too (`tsx bench/bare-route.ts` with PORT set).
 */
export function bareApp(): Express {
  const bare = express();
  bare.post('/bare', (_req, res) => {
    res.json({
      status: 'active',
      access_token: 'x'.repeat(43),
      token_type: 'bearer',
      expires_at: new Date().toISOString(),
      scope: 'tools.read',
    });
  });
  bare.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  return bare;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  bareApp().listen(Number(process.env.PORT), '127.0.0.1');
}
