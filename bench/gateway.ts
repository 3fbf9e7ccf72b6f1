import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { startMcpServer } from '../test/support/mcp-server.js';
import { startProtectedApi } from '../test/support/protected-api.js';
import { freshOwner, startStack, type RunSettings } from '../test/support/stack.js';
import { autocannon, freePort, spawnServer } from './spawn.js';

const run = promisify(execFile);
const round = (x: number) => Math.round(x * 1000) / 1000;

interface Load {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

/**
 * The gateway against the same upstream called directly with the same token, in the same run: MCP `tools/call`
 * (32 clients, each in its own session through the gateway) and HTTP GET through the proxy; then 1,000 MCP
 * sessions with open event streams on one API process, and its memory. The API runs in its own process (the
 * deployed shape), the load generator in another; the upstreams check tokens at a real authorization server,
 * caching the answer for a minute as resource servers do.
 */
export async function gatewayBench(runSettings: RunSettings, scale: number): Promise<Record<string, unknown>> {
  // BENCH_GATEWAY=http (or mcp, sessions; comma-separated) measures only those parts, for a quick look.
  const parts = new Set((process.env.BENCH_GATEWAY ?? 'sessions,mcp,http').split(','));
  const port = await freePort();
  const client = {
    client_id: 'api-tool',
    client_secret: 'api-tool-secret',
    redirect_uris: [`http://127.0.0.1:${port}/api/v1/auth/tool/callback`],
  };
  const limits = { RATE_LIMIT_IP_PER_MINUTE: '100000000', RATE_LIMIT_AGENT_PER_MINUTE: '100000000', LOG_LEVEL: 'warn' };
  const mcp = await startMcpServer({
    gatewayTools: true,
    challengeScope: 'mcp:tools',
    introspectionCacheMs: 60_000,
    acceptAnyResource: true,
    clients: [client],
  });
  const apiTokenCache = new Map<string, Awaited<ReturnType<typeof mcp.introspect>>>();
  const api = await startProtectedApi(async (token) => {
    if (!apiTokenCache.has(token)) apiTokenCache.set(token, await mcp.introspect(token));
    return apiTokenCache.get(token)!;
  });
  const h = await startStack(runSettings, {
    port,
    env: limits,
    extraTools: [
      {
        id: 'remote',
        tool_type: 'mcp',
        connection_params: { type: 'streamable-http', url: mcp.url },
        auth: { type: 'oauth2' },
        manifest: [],
      },
      {
        id: 'api',
        tool_type: 'api',
        connection_params: { type: 'http', url: `${api.origin}/v1` },
        auth: {
          type: 'oauth2',
          issuer: mcp.issuer,
          client_id: client.client_id,
          client_secret: client.client_secret,
          scopes: ['mcp:tools'],
        },
        manifest: [],
      },
    ],
  });
  h.services.log.level = 'warn';
  const children: ChildProcess[] = [];
  try {
    const who = freshOwner('gateway-bench');
    const owner = { agentId: who.agent, userId: who.user, toolId: 'remote' };
    const first = await h.call('POST', '/api/v1/credentials/remote', who);
    await h.consent(first.json.authorization_url, { login: who.user });
    const token = (await h.api.broker.readActive(owner))!.accessToken;
    const apiChild = await spawnServer(['api/main.ts'], { ...h.workerEnv, ...limits }, children);
    const apiPid = children.at(-1)!.pid!;
    const dev = { 'x-agent-id': who.agent, 'x-user-id': who.user };
    const seconds = Math.max(3, Math.round(10 * scale));
    // 1,000 sessions with open event streams on the fresh API process (first, so its memory is not the load's).
    const sessions = Math.max(10, Math.round(1000 * scale));
    const held = parts.has('sessions') ? await holdSessions(apiPid, apiChild, { ...dev, 'x-agent-id': 'session-holder' }, sessions) : null;

    const load = async (input: Record<string, unknown>): Promise<Load> => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bench/mcp-load.ts', JSON.stringify(input)], {
        maxBuffer: 16 * 1024 * 1024,
      });
      return JSON.parse(stdout.trim().split('\n').at(-1)!) as Load;
    };
    let mcpResult: Record<string, unknown> = { skipped: 'not selected (BENCH_GATEWAY)' };
    if (parts.has('mcp')) {
      const mcpCall = { mode: 'call', concurrency: 32 };
      await load({ ...mcpCall, url: mcp.url, headers: { authorization: `Bearer ${token}` }, seconds: 2 });
      const mcpDirect = await load({ ...mcpCall, url: mcp.url, headers: { authorization: `Bearer ${token}` }, seconds });
      await load({ ...mcpCall, url: `${apiChild}/api/v1/mcp/remote`, headers: dev, session: true, seconds: 2 });
      const cpuMcp = cpuOf(apiPid);
      const mcpGateway = await load({ ...mcpCall, url: `${apiChild}/api/v1/mcp/remote`, headers: dev, session: true, seconds });
      const mcpApiCpu = cpuOf(apiPid).since(cpuMcp);
      // One client alone: the hop's own latency, without the machine's two cores shared by three busy processes.
      const single = { mode: 'call', concurrency: 1, seconds: Math.max(2, Math.round(5 * scale)) };
      const mcpDirect1 = await load({ ...single, url: mcp.url, headers: { authorization: `Bearer ${token}` } });
      const mcpGateway1 = await load({ ...single, url: `${apiChild}/api/v1/mcp/remote`, headers: dev, session: true });
      mcpResult = {
        direct: mcpDirect,
        gateway: mcpGateway,
        ...ratios(mcpDirect, mcpGateway),
        apiCpuOfOneCore: mcpApiCpu,
        oneClient: { direct: mcpDirect1, gateway: mcpGateway1, addedP50Ms: round(mcpGateway1.p50 - mcpDirect1.p50) },
      };
    }

    // The HTTP proxy, with autocannon as for the token fetch: the API tool uses the same user's token.
    const cannon = async (url: string, headers: Record<string, string>, connections = 32): Promise<Load> => {
      const r = await autocannon(url, { seconds, headers, connections });
      return { rps: r.rps, p50: r.p50, p99: r.p99, errors: r.errors + r.non2xx };
    };
    const apiWho = { ...who };
    const apiFirst = await h.call('POST', '/api/v1/credentials/api', apiWho);
    let http: Record<string, unknown> = {
      skipped: parts.has('http') ? `the API tool could not be authorized (${apiFirst.status})` : 'not selected (BENCH_GATEWAY)',
    };
    if (apiFirst.status === 202 && parts.has('http')) {
      await h.consent(apiFirst.json.authorization_url, { login: who.user });
      const apiToken = (await h.api.broker.readActive({ ...owner, toolId: 'api' }))!.accessToken;
      const httpDirect = await cannon(`${api.origin}/v1/me`, { authorization: `Bearer ${apiToken}` });
      // The floor: the least any Node hop costs here (bare-proxy.ts), measured in the same run.
      const bare = await spawnServer(['bench/bare-proxy.ts'], { UPSTREAM: `${api.origin}/v1`, TOKEN: apiToken }, children);
      const httpBare = await cannon(`${bare}/me`, {});
      const cpuHttp = cpuOf(apiPid);
      const httpGateway = await cannon(`${apiChild}/api/v1/proxy/api/me`, dev);
      const httpApiCpu = cpuOf(apiPid).since(cpuHttp);
      // One client alone, timed to the microsecond (autocannon reports whole milliseconds).
      const get1 = { mode: 'get', concurrency: 1, seconds: Math.max(2, Math.round(5 * scale)) };
      const httpDirect1 = await load({ ...get1, url: `${api.origin}/v1/me`, headers: { authorization: `Bearer ${apiToken}` } });
      const httpGateway1 = await load({ ...get1, url: `${apiChild}/api/v1/proxy/api/me`, headers: dev });
      http = {
        direct: httpDirect,
        gateway: httpGateway,
        ...ratios(httpDirect, httpGateway),
        bareNodeProxy: { ...httpBare, ...ratios(httpDirect, httpBare) },
        apiCpuOfOneCore: httpApiCpu,
        oneClient: { direct: httpDirect1, gateway: httpGateway1, addedP50Ms: round(httpGateway1.p50 - httpDirect1.p50) },
      };
    }

    const result = { mcp: mcpResult, http, sessions: held };
    console.log(`\n[gateway] 32 clients, ${seconds} s each; API in its own process`);
    if ('direct' in mcpResult) line('MCP tools/call', mcpResult as Measured);
    if ('direct' in http) {
      line('HTTP GET via proxy', http as Measured);
      const bare = http.bareNodeProxy as Load & ReturnType<typeof ratios>;
      console.log(
        `    floor   : a bare Node relay (no auth, limits, audit or scan) ${bare.rps} req/s, p50 ${bare.p50} ms: ${bare.throughputRatio} of direct; the gateway is ${round((http.gateway as Load).rps / bare.rps)} of it`,
      );
    } else console.log(`  HTTP proxy: ${String(http.skipped)}`);
    if (held)
      console.log(
        `  ${held.opened}/${held.requested} MCP sessions with open event streams (${held.errors} errors, ${held.openOnServer} open on the server): RSS ${held.rssBeforeMb} MB → ${held.rssHeldMb} MB (${held.perSessionKb} KB per session)`,
      );
    return result;
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.filter((c) => c.exitCode === null).map((c) => new Promise((r) => c.once('exit', r))));
    await h.close();
    await mcp.close();
    await api.close();
  }
}

/** `sessions` MCP sessions with open event streams on the API process, held while its memory is read. */
async function holdSessions(apiPid: number, apiChild: string, headers: Record<string, string>, sessions: number) {
  const rssBefore = rssOf(apiPid);
  const holder = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/mcp-load.ts', JSON.stringify({ mode: 'hold', url: `${apiChild}/api/v1/mcp/remote`, headers, sessions })],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const held = await new Promise<{ opened: number; errors: number }>((resolve) =>
    holder.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(String(d)) as { opened: number; errors: number })),
  );
  const rssHeld = rssOf(apiPid);
  const metrics = await (await fetch(`${apiChild}/metrics`)).text();
  const open = Number(/^broker_gateway_mcp_sessions (\d+)/m.exec(metrics)?.[1] ?? -1);
  holder.stdin!.write('done\n');
  await new Promise((r) => holder.once('exit', r));
  return {
    requested: sessions,
    ...held,
    openOnServer: open,
    rssBeforeMb: rssBefore,
    rssHeldMb: rssHeld,
    perSessionKb: round(((rssHeld - rssBefore) * 1024) / Math.max(1, held.opened)),
  };
}

type Measured = ReturnType<typeof ratios> & {
  direct: Load;
  gateway: Load;
  apiCpuOfOneCore?: number;
  oneClient?: { direct: Load; gateway: Load; addedP50Ms: number };
};

function ratios(direct: Load, gateway: Load) {
  return { throughputRatio: round(gateway.rps / direct.rps), addedP50Ms: round(gateway.p50 - direct.p50) };
}

function line(
  label: string,
  m: {
    direct: Load;
    gateway: Load;
    throughputRatio: number;
    addedP50Ms: number;
    apiCpuOfOneCore?: number;
    oneClient?: { direct: Load; gateway: Load; addedP50Ms: number };
  },
): void {
  console.log(`  ${label}`);
  console.log(`    direct  : ${m.direct.rps} req/s, p50 ${m.direct.p50} ms, p99 ${m.direct.p99} ms (errors ${m.direct.errors})`);
  console.log(`    gateway : ${m.gateway.rps} req/s, p50 ${m.gateway.p50} ms, p99 ${m.gateway.p99} ms (errors ${m.gateway.errors})`);
  console.log(`    ratio   : ${m.throughputRatio} of direct throughput (target ≥ 0.7), p50 +${m.addedP50Ms} ms (target ≤ 2 ms)`);
  if (m.apiCpuOfOneCore !== undefined)
    console.log(`    the API process used ${Math.round(m.apiCpuOfOneCore * 100)}% of one core meanwhile`);
  if (m.oneClient)
    console.log(
      `    1 client: direct p50 ${m.oneClient.direct.p50} ms, gateway p50 ${m.oneClient.gateway.p50} ms: +${m.oneClient.addedP50Ms} ms per call for the hop`,
    );
}

/** CPU time a process has used so far; `since` gives the share of one core used from an earlier reading. */
function cpuOf(pid: number) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const at = performance.now();
  return { ticks, at, since: (before: { ticks: number; at: number }) => round((ticks - before.ticks) / 100 / ((at - before.at) / 1000)) };
}

/** Resident memory of a process, in MB (Linux). */
function rssOf(pid: number): number {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return Math.round(kb / 102.4) / 10;
}
