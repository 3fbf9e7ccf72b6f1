import type { Response } from 'express';
import { escapeHtml } from '../lib/html.js';

export { escapeHtml };

/** The small page the user sees after the provider sends them back. Never shows a token. */
export function resultPage(title: string, message: string, ok: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem;color:${ok ? '#1a7f37' : '#b42318'}}</style></head>
<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>`;
}

/** An HTML page of ours: never cached, under its Content-Security-Policy (and any other header it needs). */
export function sendHtml(res: Response, status: number, html: string, csp: string, headers: Record<string, string> = {}): void {
  res.status(status).type('html').setHeader('Cache-Control', 'no-store').setHeader('Content-Security-Policy', csp);
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.send(html);
}

export function sendPage(res: Response, status: number, title: string, message: string, ok: boolean): void {
  sendHtml(
    res,
    status,
    resultPage(title, message, ok),
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
  );
}
