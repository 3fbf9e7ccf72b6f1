import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorize, CREDENTIAL_PATH } from '../support/flows.js';
import { freshOwner, startHarness, type Harness } from '../support/harness.js';

let h: Harness;
let token: string;
let consumedCallback: string;
const who = freshOwner('hostile');

beforeAll(async () => {
  h = await startHarness({ env: { RATE_LIMIT_CALLBACK_IP_PER_MINUTE: '10000' } });
  // One real credential, so the corpus can check its token never leaks and is still served afterwards.
  const first = await h.call('POST', CREDENTIAL_PATH, who);
  const page = await h.consent(first.json.authorization_url, { login: who.user });
  consumedCallback = page.callbackUrl.href;
  token = (await h.call('POST', CREDENTIAL_PATH, who)).json.access_token;
});
afterAll(async () => {
  await h?.close();
});

interface Probe {
  label: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

const nasty = [
  '..',
  '../../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '%2e%2e%2f%2e%2e%2f',
  'a'.repeat(300),
  '\u202Eevil\u202C',
  'zero\u200Bwidth',
  '\u{1F4A5}',
  'nul\u0000byte',
  "' OR 1=1 --",
  "'; DROP TABLE credentials; --",
  '<script>alert(1)</script>',
  '${jndi:ldap://127.0.0.1/x}',
  '{{7*7}}',
  'a b',
  ' ',
  '\uFFFD\uFFFE',
  'e\u0301',
  '-leading-dash',
];

const brokenBodies = [
  '{',
  '{"force_refresh":}',
  '{"force_refresh": tru}',
  '[]',
  'null',
  '"string"',
  '123',
  'true',
  '{"force_refresh":"true"}',
  '{"force_refresh":1}',
  '{"force_refresh":null}',
  '{"force_refresh":true,"extra":1}',
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  `${'['.repeat(5000)}${']'.repeat(5000)}`,
  '\uFEFF{"force_refresh":true}x',
  '{"force_refresh":true}{"force_refresh":false}',
  "{'force_refresh': true}",
  '{"force_refresh":true,}',
  '\u0000',
];

function corpus(): Probe[] {
  const probes: Probe[] = [];
  const dev = { 'x-agent-id': who.agent, 'x-user-id': who.user };
  for (const id of nasty) {
    const enc = encodeURIComponent(id);
    probes.push({ label: `tool id ${JSON.stringify(id)}`, method: 'POST', path: `/api/v1/credentials/${enc}`, headers: dev });
    probes.push({ label: `GET tool id ${JSON.stringify(id)}`, method: 'GET', path: `/api/v1/credentials/${enc}`, headers: dev });
    probes.push({ label: `DELETE tool id ${JSON.stringify(id)}`, method: 'DELETE', path: `/api/v1/credentials/${enc}`, headers: dev });
    // Control characters cannot travel in a header at all (HTTP clients and Node refuse them).
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    if (!/[\x00-\x1f\x7f]/.test(id)) {
      probes.push({
        label: `agent header ${JSON.stringify(id)}`,
        method: 'POST',
        path: CREDENTIAL_PATH,
        headers: { ...dev, 'x-agent-id': latin1(id) },
      });
      probes.push({
        label: `user header ${JSON.stringify(id)}`,
        method: 'POST',
        path: CREDENTIAL_PATH,
        headers: { ...dev, 'x-user-id': latin1(id) },
      });
    }
    probes.push({ label: `wait ${JSON.stringify(id)}`, method: 'GET', path: `${CREDENTIAL_PATH}?wait=${enc}`, headers: dev });
    probes.push({ label: `callback state ${JSON.stringify(id)}`, method: 'GET', path: `/api/v1/auth/tool/callback?state=${enc}&code=abc` });
    probes.push({
      label: `callback error ${JSON.stringify(id)}`,
      method: 'GET',
      path: `/api/v1/auth/tool/callback?state=${enc}&error=${enc}`,
    });
    probes.push({ label: `start ${JSON.stringify(id)}`, method: 'GET', path: `/api/v1/auth/tool/start?request=${enc}&token=${enc}` });
    probes.push({ label: `admin revoke ${JSON.stringify(id)}`, method: 'DELETE', path: `/api/v1/admin/credentials/${enc}`, headers: dev });
    probes.push({
      label: `admin offboard ${JSON.stringify(id)}`,
      method: 'POST',
      path: `/api/v1/admin/users/${enc}/revoke-all`,
      headers: dev,
      body: '{}',
    });
    probes.push({
      label: `admin list ${JSON.stringify(id)}`,
      method: 'GET',
      path: `/api/v1/admin/credentials?agent_id=${enc}`,
      headers: dev,
    });
    probes.push({ label: `admin audit ${JSON.stringify(id)}`, method: 'GET', path: `/api/v1/admin/audit?event_type=${enc}`, headers: dev });
  }
  for (const body of brokenBodies) {
    probes.push({
      label: `body ${JSON.stringify(body.slice(0, 40))}`,
      method: 'POST',
      path: CREDENTIAL_PATH,
      headers: { ...dev, 'content-type': 'application/json' },
      body,
    });
    probes.push({
      label: `admin body ${JSON.stringify(body.slice(0, 40))}`,
      method: 'DELETE',
      path: '/api/v1/admin/credentials/00000000-0000-4000-8000-000000000000',
      headers: { ...dev, 'content-type': 'application/json' },
      body,
    });
  }
  probes.push(
    {
      label: 'oversized body',
      method: 'POST',
      path: CREDENTIAL_PATH,
      headers: { ...dev, 'content-type': 'application/json' },
      body: JSON.stringify({ force_refresh: true, pad: 'x'.repeat(1_000_000) }),
    },
    { label: 'oversized header', method: 'GET', path: CREDENTIAL_PATH, headers: { ...dev, 'x-padding': 'x'.repeat(20_000) } },
    { label: 'oversized URL', method: 'GET', path: `${CREDENTIAL_PATH}?q=${'x'.repeat(100_000)}` },
    { label: 'malformed percent-encoding', method: 'GET', path: '/api/v1/credentials/%E0%A4%A', headers: dev },
    { label: 'wait twice', method: 'GET', path: `${CREDENTIAL_PATH}?wait=1&wait=2`, headers: dev },
    { label: 'wait negative', method: 'GET', path: `${CREDENTIAL_PATH}?wait=-1`, headers: dev },
    { label: 'wait exponent', method: 'GET', path: `${CREDENTIAL_PATH}?wait=1e3`, headers: dev },
    { label: 'wait hex', method: 'GET', path: `${CREDENTIAL_PATH}?wait=0x10`, headers: dev },
    { label: 'wait array syntax', method: 'GET', path: `${CREDENTIAL_PATH}?wait[]=1`, headers: dev },
    { label: 'PUT', method: 'PUT', path: CREDENTIAL_PATH, headers: dev },
    { label: 'PATCH', method: 'PATCH', path: CREDENTIAL_PATH, headers: dev },
    { label: 'no identity', method: 'POST', path: CREDENTIAL_PATH },
    { label: 'agent without user', method: 'POST', path: CREDENTIAL_PATH, headers: { 'x-agent-id': who.agent } },
    { label: 'bearer garbage', method: 'POST', path: CREDENTIAL_PATH, headers: { authorization: 'Bearer \u00ff\u00fe' } },
    { label: 'bearer empty', method: 'POST', path: CREDENTIAL_PATH, headers: { authorization: 'Bearer ' } },
    { label: 'basic auth', method: 'POST', path: CREDENTIAL_PATH, headers: { authorization: 'Basic YTpi' } },
    {
      label: 'forged JWT',
      method: 'POST',
      path: CREDENTIAL_PATH,
      headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.' },
    },
    // The gateway: MCP without a session, with a made-up one, with garbage; the proxy on the wrong kind of tool.
    { label: 'mcp GET without session', method: 'GET', path: '/api/v1/mcp/sandbox', headers: dev },
    {
      label: 'mcp tools/call without session',
      method: 'POST',
      path: '/api/v1/mcp/sandbox',
      headers: { ...dev, 'content-type': 'application/json' },
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}',
    },
    {
      label: 'mcp made-up session',
      method: 'POST',
      path: '/api/v1/mcp/sandbox',
      headers: { ...dev, 'content-type': 'application/json', 'mcp-session-id': 'not-a-session' },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    },
    {
      label: 'mcp garbage',
      method: 'POST',
      path: '/api/v1/mcp/sandbox',
      headers: { ...dev, 'content-type': 'application/json' },
      body: '{]',
    },
    { label: 'mcp unknown tool', method: 'POST', path: '/api/v1/mcp/%00nope', headers: dev },
    { label: 'proxy dot segments', method: 'GET', path: '/api/v1/proxy/sandbox/../../etc/passwd', headers: dev },
    { label: 'proxy encoded slash', method: 'GET', path: '/api/v1/proxy/sandbox/a%2F..%2F..', headers: dev },
    { label: 'proxy bad escape', method: 'GET', path: '/api/v1/proxy/sandbox/%zz', headers: dev },
    { label: 'replayed callback', method: 'GET', path: new URL(consumedCallback).pathname + new URL(consumedCallback).search },
    { label: 'callback without state', method: 'GET', path: '/api/v1/auth/tool/callback?code=abc' },
    {
      label: 'callback without code',
      method: 'GET',
      path: `/api/v1/auth/tool/callback?state=${new URL(consumedCallback).searchParams.get('state')}`,
    },
    {
      label: 'callback error access_denied',
      method: 'GET',
      path: '/api/v1/auth/tool/callback?state=unknown&error=access_denied&error_description=%3Cscript%3E',
    },
    { label: 'callback state array', method: 'GET', path: '/api/v1/auth/tool/callback?state=a&state=b&code=c' },
    { label: 'start without params', method: 'GET', path: '/api/v1/auth/tool/start' },
    {
      label: 'start with a wrong token',
      method: 'GET',
      path: '/api/v1/auth/tool/start?request=00000000-0000-4000-8000-000000000000&token=x',
    },
    {
      label: 'codec garbage',
      method: 'POST',
      path: '/codec/decode',
      headers: { 'content-type': 'application/json' },
      body: '{"payloads":[{"metadata":{"encoding":"YmluYXJ5L2VuY3J5cHRlZA=="},"data":"AAAA"}]}',
    },
    {
      label: 'codec wrong shape',
      method: 'POST',
      path: '/codec/decode',
      headers: { 'content-type': 'application/json' },
      body: '{"payloads":"x"}',
    },
    { label: 'unknown API path', method: 'GET', path: '/api/v1/../../etc/passwd' },
    { label: 'admin list bad limit', method: 'GET', path: '/api/v1/admin/credentials?limit=-5', headers: dev },
    { label: 'admin audit bad date', method: 'GET', path: '/api/v1/admin/audit?from=2026-13-45', headers: dev },
  );
  // Each id is within its own bound, but encoded together they would pass Temporal's workflow id limit.
  const longIds = { 'x-agent-id': `a${'@'.repeat(199)}`, 'x-user-id': `u${'@'.repeat(199)}` };
  for (const method of ['POST', 'GET', 'DELETE']) {
    probes.push({ label: `${method} with ids too long for a workflow id`, method, path: CREDENTIAL_PATH, headers: longIds });
  }
  for (let i = 0; i < 10; i++) {
    probes.push({
      label: `forged callback ${i}`,
      method: 'GET',
      path: `/api/v1/auth/tool/callback?state=${Math.random().toString(36).slice(2)}&code=${Math.random().toString(36).slice(2)}`,
    });
  }
  return probes;
}

/** Header values travel as Latin-1; anything beyond it is sent as its UTF-8 bytes, as a hostile client would. */
function latin1(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** A raw HTTP request (fetch refuses some of what an attacker can send). */
function send(p: Probe): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(h.baseUrl);
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method: p.method,
        path: p.path,
        headers: { ...(p.headers ?? {}), ...(p.body !== undefined ? { 'content-length': Buffer.byteLength(p.body) } : {}) },
        insecureHTTPParser: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers['content-type'] ?? ''),
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    if (p.body !== undefined) req.write(p.body);
    req.end();
  });
}

describe('hostile input', () => {
  it('answers every malformed or malicious request with a 4xx and a stable code, never a 5xx or a secret', async () => {
    const probes = corpus();
    expect(probes.length).toBeGreaterThanOrEqual(200);
    const failures: string[] = [];
    for (const p of probes) {
      let res: { status: number; type: string; body: string };
      try {
        res = await send(p);
      } catch (err) {
        failures.push(`${p.label}: transport error ${(err as Error).message}`);
        continue;
      }
      if (res.status < 400 || res.status > 499) failures.push(`${p.label}: status ${res.status} ${res.body.slice(0, 120)}`);
      if (res.type.includes('json')) {
        const code = (JSON.parse(res.body) as { error?: { code?: string } }).error?.code ?? '';
        if (!/^[a-z_]{3,64}$/.test(code)) failures.push(`${p.label}: no stable code in ${res.body.slice(0, 120)}`);
      } else if (!res.type.includes('html')) {
        failures.push(`${p.label}: unexpected content type ${res.type}`);
      }
      if (res.body.includes(token)) failures.push(`${p.label}: the access token leaked`);
      if (/<script>/i.test(res.body)) failures.push(`${p.label}: reflected markup`);
    }
    expect(failures).toEqual([]);

    // Still healthy, nothing lost, nothing leaked to the logs.
    expect((await fetch(`${h.baseUrl}/healthz`)).status).toBe(200);
    const again = await h.call('POST', CREDENTIAL_PATH, who);
    expect(again.status).toBe(200);
    expect(again.json.access_token).toBe(token);
    expect(h.logs.join('\n')).not.toContain(token);
  });

  it('keeps the provider reachable for a real flow afterwards', async () => {
    const other = freshOwner('after-hostile');
    const { accessToken } = await authorize(h, other);
    expect((await h.introspect(accessToken)).active).toBe(true);
  });
});
