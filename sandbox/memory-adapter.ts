import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * oidc-provider's storage for the sandbox: in memory like its default, but unbounded (the default keeps only
 * the last 1,000 entries, so thousands of grants would silently lose their refresh tokens), and, for `npm start`,
 * kept in a file under DATA_DIR so a restart does not end every credential at its next refresh.
 */
interface Entry {
  payload: Record<string, unknown>;
  expiresAt: number;
}

const store = new Map<string, Entry>();
const grantKeys = new Map<string, Set<string>>();
let stateFile: string | null = null;
let saving: NodeJS.Timeout | null = null;

function index(key: string, payload: Record<string, unknown>): void {
  const grantId = payload.grantId;
  if (typeof grantId !== 'string') return;
  let keys = grantKeys.get(grantId);
  if (!keys) grantKeys.set(grantId, (keys = new Set()));
  keys.add(key);
}

/** Keeps the sandbox's grants and tokens in `file` (loaded now, written shortly after each change). */
export function persistSandboxState(file: string): void {
  stateFile = file;
  if (!existsSync(file)) return;
  const saved = JSON.parse(readFileSync(file, 'utf8')) as [string, Record<string, unknown>, number | null][];
  for (const [key, payload, expiresAt] of saved) {
    if (expiresAt !== null && expiresAt <= Date.now()) continue;
    store.set(key, { payload, expiresAt: expiresAt ?? Infinity });
    index(key, payload);
  }
}

/** Writes the state file now (at shutdown). */
export function saveSandboxState(): void {
  if (saving) clearTimeout(saving);
  saving = null;
  if (!stateFile) return;
  const now = Date.now();
  const live = [...store]
    .filter(([, e]) => e.expiresAt > now)
    .map(([k, e]) => [k, e.payload, Number.isFinite(e.expiresAt) ? e.expiresAt : null]);
  mkdirSync(dirname(stateFile), { recursive: true });
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(live), { mode: 0o600 });
  renameSync(`${stateFile}.tmp`, stateFile);
}

function changed(): void {
  if (!stateFile || saving) return;
  saving = setTimeout(saveSandboxState, 200);
  saving.unref();
}

export class SandboxAdapter {
  constructor(private readonly model: string) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    index(key, payload);
    changed();
  }

  async find(id: string): Promise<Record<string, unknown> | undefined> {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
    for (const [key, entry] of store) {
      if (key.startsWith(`${this.model}:`) && entry.payload.uid === uid) return this.find(key.slice(this.model.length + 1));
    }
    return undefined;
  }

  async findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
    for (const [key, entry] of store) {
      if (key.startsWith(`${this.model}:`) && entry.payload.userCode === userCode) return this.find(key.slice(this.model.length + 1));
    }
    return undefined;
  }

  async consume(id: string): Promise<void> {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    changed();
  }

  async destroy(id: string): Promise<void> {
    store.delete(this.key(id));
    changed();
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    for (const key of grantKeys.get(grantId) ?? []) store.delete(key);
    grantKeys.delete(grantId);
    changed();
  }
}
