import express from 'express';

/**
 * The token-fetch baseline in a process of its own: a bare Express route returning constant JSON of the same
 * shape as an issued credential. Started by `npm run bench` with PORT set.
 */
const bare = express();
bare.post('/bare', (_req, res) => {
  res.json({ status: 'active', access_token: 'x'.repeat(43), token_type: 'bearer', expires_at: new Date().toISOString(), scope: 'tools.read' });
});
bare.get('/healthz', (_req, res) => {
  res.json({ status: 'ok' });
});
bare.listen(Number(process.env.PORT), '127.0.0.1');
