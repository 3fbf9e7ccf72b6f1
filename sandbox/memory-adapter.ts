/**
 * oidc-provider's storage for the sandbox: in memory like its default, but unbounded (the default keeps only
 * the last 1,000 entries, so thousands of grants would silently lose their refresh tokens).
 */
interface Entry {
  payload: Record<string, unknown>;
  expiresAt: number;
}

const store = new Map<string, Entry>();
const grantKeys = new Map<string, Set<string>>();

export class SandboxAdapter {
  constructor(private readonly model: string) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    const grantId = payload.grantId;
    if (typeof grantId === 'string') {
      let keys = grantKeys.get(grantId);
      if (!keys) grantKeys.set(grantId, (keys = new Set()));
      keys.add(key);
    }
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
  }

  async destroy(id: string): Promise<void> {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    for (const key of grantKeys.get(grantId) ?? []) store.delete(key);
    grantKeys.delete(grantId);
  }
}
