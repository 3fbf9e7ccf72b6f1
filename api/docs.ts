import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import express, { Router } from 'express';
import { openApiDocument } from './openapi.js';

/** Where the `swagger-ui-dist` package's static files are. */
const SWAGGER_UI_DIR = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * GET /openapi.json (the contract) and GET /docs (a reference page, Swagger UI from the `swagger-ui-dist` npm
 * package: served from this process, no CDN, works offline).
 */
export function docsRoutes(publicOrigin: string): Router {
  const router = Router();
  // Built when first asked for, not at every start of the API.
  let document: string | undefined;
  router.get('/openapi.json', (_req, res) => {
    document ??= JSON.stringify(openApiDocument(publicOrigin));
    res.type('application/json').setHeader('Cache-Control', 'public, max-age=300').send(document);
  });
  router.use('/docs/assets', express.static(SWAGGER_UI_DIR, { index: false, maxAge: '1h' }));
  router.get('/docs/init.js', (_req, res) => {
    res.type('application/javascript').send("window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui', deepLinking: true });\n");
  });
  router.get('/docs', (_req, res) => {
    res
      .type('html')
      .setHeader('Content-Security-Policy', CSP)
      .send(
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Credential broker API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>`,
      );
  });
  return router;
}
