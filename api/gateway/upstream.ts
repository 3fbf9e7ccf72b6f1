import { createHash } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { isTerminal, type CredentialOwner } from '../../lib/domain.js';
import type { OutboundPolicy } from '../../lib/net/outbound.js';
import { BrokerError, type ActiveCredential, type CredentialBroker } from '../broker.js';
import { ApiError } from '../errors.js';
import { authorizationFailed } from './links.js';
import { proofHeaders, proofRefusal, validNonce } from '../../lib/oauth/dpop.js';
import type { Tool } from '../../lib/tools.js';

/**
 * What the user must do before the tool can be called for them. `refused`: a fingerprint of the token the tool
 * refused, so only the credential that still holds it is ended (not one another request has already replaced).
 */
export type AuthNeed = { kind: 'authorize' } | { kind: 'reauthorize'; refused: string } | { kind: 'step_up'; scopes: string[] };

/** A token's fingerprint (never the token itself) to compare tokens by. */
export function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Thrown by an upstream fetch when no token can make the call succeed until the user acts. */
export class UpstreamAuthRequired extends Error {
  constructor(readonly need: AuthNeed) {
    super(`the user must ${need.kind === 'step_up' ? 'grant more scopes' : 'authorize'} first`);
  }
}

/** Thrown when the credential exists but cannot be served this moment (a refresh is late). */
export class UpstreamUnavailable extends Error {}

/**
 * The broker's own error behind an SDK's wrapping of it (a fetch that failed inside a transport): what the agent
 * must hear (a link, try again, a refusal with its code), not "the tool could not be reached"; else `err` itself.
 */
export function ownCause(err: unknown): unknown {
  for (let e = err, depth = 0; e && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof UpstreamAuthRequired || e instanceof UpstreamUnavailable || e instanceof ApiError || e instanceof BrokerError)
      return e;
  }
  return err;
}

/** How long a call whose token just ran out waits for its refresh. */
const REFRESH_WAIT_MS = 10_000;
/** How long a first call waits for a token no one has to consent to (two token requests at most). */
const OBTAIN_WAIT_MS = 15_000;

/**
 * The tokens the upstream was sent on behalf of one owner, so that anything relayed back can be checked for
 * them (an upstream that echoes its Authorization header must not hand the token to the agent).
 */
export class SeenTokens {
  /** Each token, with its bytes to look for in answers without converting it on every look. */
  private readonly tokens = new Map<string, Buffer>();

  add(token: string): void {
    if (this.tokens.has(token)) return;
    if (this.tokens.size >= 8) this.tokens.delete(this.tokens.keys().next().value!);
    this.tokens.set(token, Buffer.from(token, 'latin1'));
  }

  /** `text` with every token the upstream saw replaced; the same string when there is none (the usual case). */
  redact(text: string): string {
    let out = text;
    for (const t of this.tokens.keys()) if (out.includes(t)) out = out.replaceAll(t, '[redacted]');
    return out;
  }

  /** A JSON value with every token replaced (serialized once to look; rebuilt only when one is there). */
  redactJson<T>(value: T): T {
    const text = JSON.stringify(value);
    if (text === undefined) return value;
    const clean = this.redact(text);
    return clean === text ? value : (JSON.parse(clean) as T);
  }

  /** Bytes with every token replaced; the same buffer when there is none. */
  redactBytes(bytes: Buffer): Buffer {
    for (const t of this.tokens.values()) if (bytes.includes(t)) return Buffer.from(this.redact(bytes.toString('latin1')), 'latin1');
    return bytes;
  }

  /** The longest token's length in bytes (what a stream must hold back to catch one split across chunks). */
  get longest(): number {
    let max = 0;
    for (const t of this.tokens.values()) max = Math.max(max, t.length);
    return max;
  }
}

export interface UpstreamOptions {
  broker: CredentialBroker;
  outbound: OutboundPolicy;
  owner: CredentialOwner;
  seen: SeenTokens;
  /** The tool called: its fixed `connection_params.headers` (an API version) go with every request. */
  tool: Tool;
}

/** What the token logic needs to see of an upstream answer, whichever HTTP client made the request. */
export interface AnswerView {
  status: number;
  header(name: string): string | null;
  /** Drops the body of an answer that is not relayed. */
  discard(): Promise<void>;
}

/**
 * A call to a tool on a user's behalf: `send` gets the user's current access token (never taken from the agent);
 * when the upstream answers 401 the token is refreshed once through the credential's workflow and the call sent
 * once more with the new token (when the body can be replayed). What only the user can fix becomes
 * UpstreamAuthRequired: no credential yet, a refreshed token refused again, or a 403 `insufficient_scope`
 * challenge (step-up). Every token sent is remembered in `seen`, so nothing relayed back can carry it.
 */
export async function callAsUser<T>(
  opts: Omit<UpstreamOptions, 'outbound' | 'tool'>,
  request: { method: string; url: string | URL },
  replayable: boolean,
  send: (auth: TokenHeaders) => Promise<T>,
  view: (answer: T) => AnswerView,
): Promise<T> {
  const { broker, owner, seen } = opts;
  let current = await currentToken(broker, owner);
  let res = await sendWith(current);
  let answer = view(res);
  if (answer.status === 401) {
    await answer.discard();
    const fresh = await newerToken(current.accessToken);
    if (!replayable) throw new UpstreamUnavailable('the token was refreshed; send the request again');
    current = fresh;
    res = await sendWith(current);
    answer = view(res);
    if (answer.status === 401) {
      await answer.discard();
      // A token the workflow just issued, refused too: the grant no longer opens the tool.
      throw new UpstreamAuthRequired({ kind: 'reauthorize', refused: fingerprint(current.accessToken) });
    }
  }
  if (answer.status === 403) {
    const scopes = insufficientScope(answer.header('www-authenticate'));
    if (scopes) {
      await answer.discard();
      throw new UpstreamAuthRequired({ kind: 'step_up', scopes });
    }
  }
  return res;

  /**
   * One request with the token: as a bearer token, or DPoP-bound with a fresh proof (RFC 9449) — and once more
   * when the server answers that the proof must carry its nonce (a body that can be sent again).
   */
  async function sendWith(credential: ActiveCredential): Promise<T> {
    seen.add(credential.accessToken);
    const key = credential.proofKey;
    if (!key) return send({ authorization: `Bearer ${credential.accessToken}` });
    const origin = new URL(request.url).origin;
    const signed = async () => {
      const sent = await send(await proofHeaders(key, request, credential.accessToken, dpopNonces.get(origin)));
      const answer = view(sent);
      const nonce = validNonce(answer.header('dpop-nonce'));
      if (nonce && nonce !== dpopNonces.get(origin)) {
        if (dpopNonces.size >= 1_000) dpopNonces.clear();
        dpopNonces.set(origin, nonce);
      }
      return { sent, answer, refusal: proofRefusal(answer.status, answer.header) };
    };
    let attempt = await signed();
    if (attempt.refusal?.error === 'use_dpop_nonce') {
      await attempt.answer.discard();
      // A body already sent cannot be sent again: the caller sends the request again, with the nonce now known.
      if (!replayable) throw new UpstreamUnavailable('the server asked for a fresh DPoP nonce; send the request again');
      attempt = await signed();
    }
    // A refused proof is not a refused token: no refresh and no revocation for it; the request fails for now.
    if (attempt.refusal) {
      await attempt.answer.discard();
      throw new UpstreamUnavailable(`the server refused the DPoP proof (${attempt.refusal.error})`);
    }
    return attempt.sent;
  }

  /**
   * A newer token than `refused`: another call's refresh, else one refresh through the workflow. Only a workflow
   * that has ended means the user must authorize again; a refresh that is late or failed for now is a retry later
   * (the token the upstream refused is not revoked for a hiccup).
   */
  async function newerToken(refused: string): Promise<ActiveCredential> {
    const current = await currentToken(broker, owner);
    if (current.accessToken !== refused) return current;
    const refreshed = await broker.shared(owner, 'refresh', REFRESH_WAIT_MS);
    if (refreshed === 'pending') throw new UpstreamUnavailable('the credential is being refreshed');
    if (refreshed === null || isTerminal(refreshed.phase))
      throw new UpstreamAuthRequired({ kind: 'reauthorize', refused: fingerprint(refused) });
    // The refresh's own row, not a read cached while it ran.
    broker.forget(owner);
    const read = await broker.readActive(owner);
    if (!read || read.accessToken === refused) throw new UpstreamUnavailable('the refresh has not produced a new token yet');
    return read;
  }
}

/** How a request carries the user's token: `Authorization`, and a DPoP proof where the token is bound to a key. */
export type TokenHeaders = { authorization: string; dpop?: string };

/** The nonce each resource server last gave for DPoP proofs (RFC 9449 §9), by origin. */
const dpopNonces = new Map<string, string>();

/** An answer of undici's request API, as the token logic sees it. */
export const undiciView = (r: Dispatcher.ResponseData): AnswerView => ({
  status: r.statusCode,
  header: (name) => {
    const v = r.headers[name];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
  },
  discard: () => r.body.dump().catch(() => {}),
});

const fetchView = (res: Response): AnswerView => ({
  status: res.status,
  header: (name) => res.headers.get(name),
  discard: () => res.body?.cancel().catch(() => {}) ?? Promise.resolve(),
});

/** A tool's fixed `connection_params.headers` (an API version, say), names lower-cased: sent with every request. */
export function fixedHeaders(tool: Tool): Record<string, string> {
  return Object.fromEntries(Object.entries(tool.connection.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

/** `callAsUser` as a fetch (what the MCP SDK's client transports take), through the outbound policy. */
export function userFetch(opts: UpstreamOptions): (input: string | URL | Request, init?: RequestInit) => Promise<Response> {
  return (input, init = {}) => {
    const replayable = init.body === undefined || init.body === null || typeof init.body === 'string' || init.body instanceof Uint8Array;
    const send = (auth: TokenHeaders) => {
      const headers = new Headers(init.headers);
      for (const [k, v] of Object.entries({ ...fixedHeaders(opts.tool), ...auth })) headers.set(k, v);
      return opts.outbound.streamingFetch(input, { ...init, headers });
    };
    const url = input instanceof Request ? input.url : input;
    const method = init.method ?? (input instanceof Request ? input.method : 'GET');
    return callAsUser(opts, { method, url }, replayable, send, fetchView);
  };
}

/** The owner's usable access token; a late refresh is nudged once and waited for briefly. */
async function currentToken(broker: CredentialBroker, owner: CredentialOwner): Promise<ActiveCredential> {
  let hit = await broker.usable(owner);
  if (hit === null && broker.obtainsItself(owner)) hit = await obtainNow(broker, owner);
  if (hit === null) throw new UpstreamAuthRequired({ kind: 'authorize' });
  if (hit === 'late') throw new UpstreamUnavailable('the credential is being refreshed');
  return hit;
}

/**
 * A token no one has to consent to (machine access, a user's exchanged enterprise identity): the first call starts
 * its workflow and waits for it, instead of answering with a link; a refusal is said as the agent's error.
 */
async function obtainNow(broker: CredentialBroker, owner: CredentialOwner): Promise<ActiveCredential | 'late' | null> {
  const view = await broker.shared(owner, 'ensure', OBTAIN_WAIT_MS);
  if (view === 'pending') return 'late';
  if (view?.phase === 'authorization_failed') throw authorizationFailed(view.endReason);
  if (view?.phase !== 'active' && view?.phase !== 'refreshing') return null;
  broker.forget(owner);
  return broker.readActive(owner);
}

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,200}$/;

/** The scopes a `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` challenge asks for (RFC 6750). */
export function insufficientScope(header: string | null): string[] | null {
  if (!header || !/error="?insufficient_scope"?/i.test(header)) return null;
  const scope = /scope="([^"]{1,1000})"/i.exec(header)?.[1];
  const scopes = (scope ?? '').split(' ').filter((s) => SCOPE_TOKEN.test(s));
  return scopes.length ? scopes.slice(0, 20) : null;
}
