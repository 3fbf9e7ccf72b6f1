import { agentAssertion, type AgentAssertionOptions } from './assertion.js';
import { BrokerApiError, ERROR_CODES, type ErrorCode } from './errors.js';

/** Who is asking: the agent (a key, or signed assertions) and the user it acts for. */
export type BrokerIdentity =
  | {
      /** The agent's key (`npm run agents -- create`), or options to sign a fresh assertion per request. */
      agent: { key: string } | (Omit<AgentAssertionOptions, 'audience'> & { audience?: string });
      /** The user's identity as your gateway signed it (`X-User-Identity`), or a function returning a fresh one. */
      userIdentity: string | (() => string | Promise<string>);
    }
  | {
      /** Development mode only: plain ids (`X-Agent-Id`, `X-User-Id`). */
      development: { agentId: string; userId: string };
    };

export interface BrokerClientOptions {
  /** The broker's public origin, e.g. https://broker.example.com. */
  baseUrl: string;
  identity: BrokerIdentity;
  fetch?: typeof fetch;
}

/** What `getOrAuthorize` answers: a usable credential, or the link to show the user. */
export type Credential =
  | { status: 'active'; accessToken: string | null; tokenType: string | null; expiresAt: string | null; scope: string | null }
  | { status: 'authorization_required'; authorizationUrl: string; expiresAt: string };

/** A credential's status (never a token). */
export interface CredentialStatus {
  status: string;
  credentialId: string | null;
  scope: string | null;
  expiresAt: string | null;
  credentialExpiresAt: string | null;
  authorizationUrl: string | null;
  endReason: string | null;
  account: { id: string; name: string | null } | null;
}

const KNOWN = new Set<string>(ERROR_CODES);
/** The longest single wait the broker accepts (`?wait=`). */
const MAX_WAIT_SECONDS = 60;

/** The credentials API for one agent acting for one user. */
export class BrokerClient {
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: BrokerClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.fetchImpl = opts.fetch ?? fetch;
  }

  /** The user's credential for the tool if one is active; else the authorization link to show them. */
  getOrAuthorize(toolId: string, opts: { signal?: AbortSignal } = {}): Promise<Credential> {
    return this.post(toolId, {}, opts.signal);
  }

  /** The tool answered 401: refresh now (or the link, when the user must authorize again). */
  refresh(toolId: string, opts: { signal?: AbortSignal } = {}): Promise<Credential> {
    return this.post(toolId, { force_refresh: true }, opts.signal);
  }

  /** The tool answered 403 insufficient_scope: the step-up link for the wider scopes (the current token stays). */
  stepUp(toolId: string, scopes: string[], opts: { signal?: AbortSignal } = {}): Promise<Credential> {
    return this.post(toolId, { insufficient_scope: scopes.join(' ') }, opts.signal);
  }

  async status(toolId: string, opts: { waitSeconds?: number; signal?: AbortSignal } = {}): Promise<CredentialStatus> {
    const wait = opts.waitSeconds ? `?wait=${Math.min(MAX_WAIT_SECONDS, Math.max(0, Math.floor(opts.waitSeconds)))}` : '';
    const body = await this.request('GET', `/api/v1/credentials/${encodeURIComponent(toolId)}${wait}`, undefined, opts.signal);
    return statusOf(body);
  }

  /**
   * Waits until the user has finished authorizing (or the authorization ended), holding one long poll at a time;
   * `signal` ends the wait (the broker lets go of it at once).
   */
  async waitForAuthorization(toolId: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<CredentialStatus> {
    const deadline = Date.now() + (opts.timeoutMs ?? 15 * 60_000);
    for (;;) {
      opts.signal?.throwIfAborted();
      const left = Math.ceil((deadline - Date.now()) / 1000);
      const status = await this.status(toolId, {
        waitSeconds: Math.max(1, Math.min(MAX_WAIT_SECONDS, left)),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      if (status.status !== 'awaiting_authorization' || Date.now() >= deadline) return status;
    }
  }

  /** Revokes the user's credential for the tool, at the provider too. */
  async revoke(toolId: string, opts: { signal?: AbortSignal } = {}): Promise<CredentialStatus> {
    return statusOf(await this.request('DELETE', `/api/v1/credentials/${encodeURIComponent(toolId)}`, undefined, opts.signal));
  }

  /** Fresh authentication headers (a new assertion each time, when the agent signs them). */
  async headers(): Promise<Record<string, string>> {
    const id = this.opts.identity;
    if ('development' in id) return { 'x-agent-id': id.development.agentId, 'x-user-id': id.development.userId };
    const user = typeof id.userIdentity === 'function' ? await id.userIdentity() : id.userIdentity;
    const agent = 'key' in id.agent ? id.agent.key : await agentAssertion({ ...id.agent, audience: id.agent.audience ?? this.baseUrl });
    return { authorization: `Bearer ${agent}`, 'x-user-identity': user };
  }

  /** A `fetch` that authenticates every request (for the MCP SDK's transport, or the HTTP proxy). */
  readonly authenticatedFetch: typeof fetch = async (input, init = {}) => {
    const headers = new Headers(init.headers);
    for (const [k, v] of Object.entries(await this.headers())) headers.set(k, v);
    return this.fetchImpl(input, { ...init, headers });
  };

  private async post(toolId: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<Credential> {
    const json = await this.request('POST', `/api/v1/credentials/${encodeURIComponent(toolId)}`, body, signal);
    if (json.status === 'authorization_required') {
      return { status: 'authorization_required', authorizationUrl: String(json.authorization_url), expiresAt: String(json.expires_at) };
    }
    return {
      status: 'active',
      accessToken: typeof json.access_token === 'string' ? json.access_token : null,
      tokenType: typeof json.token_type === 'string' ? json.token_type : null,
      expiresAt: typeof json.expires_at === 'string' ? json.expires_at : null,
      scope: typeof json.scope === 'string' ? json.scope : null,
    };
  }

  private async request(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Record<string, any>> {
    const res = await this.fetchImpl(`${this.baseUrl}${path}`, {
      method,
      headers: { ...(await this.headers()), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal ? { signal } : {}),
    });
    const text = await res.text();
    let json: Record<string, any>;
    try {
      json = text ? (JSON.parse(text) as Record<string, any>) : {};
    } catch {
      throw new BrokerApiError('unexpected_response', `the broker answered ${res.status} with a body that is not JSON`, res.status);
    }
    if (res.ok) return json;
    const { code, message, ...details } = (json.error ?? {}) as { code?: string; message?: string };
    const retryAfter = Number(res.headers.get('retry-after'));
    throw new BrokerApiError(
      code && KNOWN.has(code) ? (code as ErrorCode) : 'unexpected_response',
      message ?? `the broker answered ${res.status}`,
      res.status,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
      { ...details, ...Object.fromEntries(Object.entries(json).filter(([k]) => k !== 'error')) },
    );
  }
}

function statusOf(json: Record<string, any>): CredentialStatus {
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  return {
    status: String(json.status),
    credentialId: text(json.credential_id),
    scope: text(json.scope),
    expiresAt: text(json.expires_at),
    credentialExpiresAt: text(json.credential_expires_at),
    authorizationUrl: text(json.authorization_url),
    endReason: text(json.end_reason),
    account: json.account && typeof json.account.id === 'string' ? { id: json.account.id, name: text(json.account.name) } : null,
  };
}
