import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);

/** Starts `node --import tsx <args>` on a free port and waits for its /healthz; returns its origin. */
export async function spawnServer(args: string[], env: Record<string, string>, children: ChildProcess[]): Promise<string> {
  const port = await freePort();
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', ...args], {
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`${args[0]} exited with ${child.exitCode}`);
    const ok = await fetch(`${origin}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return origin;
    await sleep(100);
  }
  throw new Error(`${args[0]} did not become healthy`);
}

/** A port nothing listens on now (for a server that must know its address before it starts). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

export interface Cannonade {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/**
 * autocannon in a process of its own against `url`: a 2-second warm-up, then `seconds` measured with `connections`
 * connections (so the load generator never shares the measured process's event loop).
 */
export async function autocannon(
  url: string,
  opts: { seconds: number; method?: string; headers?: Record<string, string>; connections?: number },
): Promise<Cannonade> {
  const args = [
    'node_modules/autocannon/autocannon.js',
    '-c',
    String(opts.connections ?? 32),
    ...(opts.method ? ['-m', opts.method] : []),
    ...Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}=${v}`]),
  ];
  await run(process.execPath, [...args, '-d', '2', url]);
  const { stdout } = await run(process.execPath, [...args, '--json', '-d', String(opts.seconds), url], { maxBuffer: 64 * 1024 * 1024 });
  const r = JSON.parse(stdout);
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors };
}
