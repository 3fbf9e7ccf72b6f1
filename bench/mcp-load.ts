import { Agent, fetch, type Response } from 'undici';

/**
 * A load generator for MCP over Streamable HTTP, run as its own process by `npm run bench` (so it does not share
 * the measured process's event loop). Input: one JSON argument.
 *  - `call`: `concurrency` clients, each with its own session when `session` is set (initialize first), send
 *    `tools/call` one after the other for `seconds`; prints {rps, p50, p99, errors}.
 *  - `get`: the same with plain GETs of `url` (no session).
 *  - `hold`: opens `sessions` sessions, each with its event stream (GET) held open; prints {opened, errors},
 *    then waits for a line on stdin before it closes them.
 */
interface Input {
  mode: 'call' | 'get' | 'hold';
  url: string;
  headers: Record<string, string>;
  concurrency?: number;
  seconds?: number;
  session?: boolean;
  sessions?: number;
}

const input = JSON.parse(process.argv[2]!) as Input;
const dispatcher = new Agent({ connections: Math.max(64, (input.sessions ?? 0) + 16), pipelining: 1, keepAliveTimeout: 60_000 });
const base = { ...input.headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

async function post(body: unknown, sessionId?: string): Promise<Response> {
  return fetch(input.url, {
    method: 'POST',
    headers: { ...base, ...(sessionId ? { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' } : {}) },
    body: JSON.stringify(body),
    dispatcher,
  });
}

async function initialize(): Promise<string> {
  const res = await post({
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
  });
  await res.text();
  const id = res.headers.get('mcp-session-id');
  if (res.status !== 200 || !id) throw new Error(`initialize answered ${res.status}`);
  const ack = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, id);
  await ack.text();
  return id;
}

if (input.mode === 'call' || input.mode === 'get') {
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + (input.seconds ?? 10) * 1000;
  await Promise.all(
    Array.from({ length: input.concurrency ?? 32 }, async () => {
      const sessionId = input.session ? await initialize() : undefined;
      for (let id = 1; performance.now() < deadline; id++) {
        const t0 = performance.now();
        if (input.mode === 'get') {
          // A plain GET (the HTTP proxy, or the API behind it), timed to the microsecond unlike autocannon.
          const res = await fetch(input.url, { headers: input.headers, dispatcher });
          await res.arrayBuffer();
          if (res.status !== 200) errors++;
        } else {
          const res = await post(
            { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { message: 'hello' } } },
            sessionId,
          );
          const text = await res.text();
          if (res.status !== 200 || !text.includes('"result"')) errors++;
        }
        latencies.push(performance.now() - t0);
      }
      if (sessionId)
        await fetch(input.url, { method: 'DELETE', headers: { ...base, 'mcp-session-id': sessionId }, dispatcher }).then((r) => r.text());
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.floor(q * (latencies.length - 1))]! * 100) / 100;
  console.log(JSON.stringify({ rps: Math.round(latencies.length / (input.seconds ?? 10)), p50: at(0.5), p99: at(0.99), errors }));
  await dispatcher.close();
} else {
  let errors = 0;
  const streams: { cancel: () => Promise<void> }[] = [];
  const total = input.sessions ?? 1000;
  for (let i = 0; i < total; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, total - i) }, async () => {
        try {
          const id = await initialize();
          const res = await fetch(input.url, {
            method: 'GET',
            headers: { ...input.headers, accept: 'text/event-stream', 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' },
            dispatcher,
          });
          if (res.status !== 200 || !res.body) throw new Error(`GET answered ${res.status}`);
          const reader = res.body.getReader();
          streams.push({ cancel: () => reader.cancel() });
        } catch {
          errors++;
        }
      }),
    );
  }
  console.log(JSON.stringify({ opened: streams.length, errors }));
  process.stdin.once('data', async () => {
    await Promise.allSettled(streams.map((s) => s.cancel()));
    process.exit(0);
  });
}
