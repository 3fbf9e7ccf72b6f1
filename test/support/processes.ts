import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { ensureTemporalCli } from '../../scripts/temporal-cli.js';
import { SEARCH_ATTRIBUTE_KEYS } from '../../workflows/messages.js';
import { existsSync } from 'node:fs';

/** A worker in its own process (`worker/main.ts` with the given environment), so a test can SIGKILL it. */
export function spawnWorker(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** SIGKILL, and wait until the process is gone. */
export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** True when the database is this machine's PostgreSQL cluster, which a test may stop and start. */
export function canControlPostgres(databaseUrl: string): boolean {
  return Boolean(databaseUrl) && existsSync('/etc/postgresql') && /@(127\.0\.0\.1|localhost)[:/]/.test(databaseUrl);
}

/** Stops (fast: open connections are cut) or starts the local cluster; starting a running one is no error. */
export function postgres(action: 'start' | 'stop'): void {
  const version = execFileSync('ls', ['/etc/postgresql'], { encoding: 'utf8' }).trim().split('\n')[0]!;
  try {
    execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', action, ...(action === 'stop' ? ['-m', 'fast'] : [])], {
      stdio: 'ignore',
    });
  } catch (err) {
    if (action === 'stop') throw err;
  }
}

/** A Temporal dev server that keeps its state in a file, so it can be stopped and started again with nothing lost. */
export function startTemporalOnFile(port: number, dbFile: string): ChildProcess {
  const args = [
    'server',
    'start-dev',
    '--headless',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--db-filename',
    dbFile,
    '--log-level',
    'error',
  ];
  for (const key of SEARCH_ATTRIBUTE_KEYS) args.push('--search-attribute', `${key.name}=Keyword`);
  return spawn(ensureTemporalCli(), args, { stdio: 'ignore' });
}
