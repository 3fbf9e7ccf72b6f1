import type { Client } from '@temporalio/client';
import { secretContext, toDate, type ActiveRow, type CredentialRecords } from '../lib/credentials/records.js';
import type { CredentialView, RevokeRequest } from '../workflows/messages.js';
import type { Credential } from '../lib/db/entities.js';
import type { CredentialOwner } from '../lib/domain.js';
import type { Vault, VaultError } from '../lib/vault/crypto.js';
import { importProofKey, isBound, type ProofKey } from '../lib/oauth/dpop.js';
import { BrokerError, CredentialWorkflows, type WorkflowSettings } from './credential-workflows.js';

export { BrokerError };

export interface BrokerSettings extends WorkflowSettings {
  /** How long a hot-path read may be reused in this process (0 = every read goes to the database). */
  hotCacheMs?: number;
}

export interface ActiveCredential {
  credentialId: string;
  accessToken: string;
  tokenType: string;
  expiresAt: Date | null;
  scope: string | null;
  /** The key the token is bound to (DPoP): every request with it carries a proof signed with this key. */
  proofKey?: ProofKey;
}

/**
 * An access token this close to expiry is not handed out. Kept small: while a provider is down the current
 * token is the best there is, and it is served until it really expires.
 */
const MIN_REMAINING_MS = 1_000;

/** How long a read whose token ran out waits for the nudged refresh (see `usable`). */
const STALE_WAIT_MS = 1_000;

/** A hot-path read: the row, until when it may be reused, and its access token once decrypted. */
interface HotEntry {
  row: ActiveRow | undefined;
  until: number;
  token?: string;
  proofKey?: Promise<ProofKey>;
}

/**
 * The agent-facing operations. Reads go to the database (a row read and a decrypt); Temporal is asked only
 * when something must happen: start an authorization, refresh early, revoke.
 */
export class CredentialBroker {
  private readonly hot = new Map<string, HotEntry>();
  /** When this process last recorded each credential's use (see noteUse). */
  private readonly usedAt = new Map<string, number>();
  private readonly flights = new Map<string, Promise<CredentialView | null>>();

  constructor(
    private readonly records: CredentialRecords,
    private readonly vault: Vault,
    temporal: Client,
    private readonly settings: BrokerSettings,
  ) {
    this.workflows = new CredentialWorkflows(temporal, settings);
  }

  /** The Temporal side: updates and queries to credential workflows. */
  readonly workflows: CredentialWorkflows;

  /** The newest row of this owner, ended or not. */
  latest(owner: CredentialOwner): Promise<Credential | null> {
    return this.records.latest(owner);
  }

  /**
   * The hot path: a usable access token from the vault, or null. One indexed query (plain SQL: the ORM's
   * hydration costs several times the query itself) and one AES-GCM decrypt; no Temporal round trip.
   */
  async readActive(owner: CredentialOwner, opts: { quiet?: boolean } = {}): Promise<ActiveCredential | null> {
    const read = await this.read(owner, opts);
    return read === 'stale' ? null : read;
  }

  /**
   * A token to use now. One that ran out before its refresh landed (the provider or a worker is away) nudges the
   * workflow once — shared by every reader of the credential in this process — and is waited for at most
   * `waitMs`: reads stay reads, answered within a second either way. Null: no credential, or its workflow has ended
   * (authorize); `'late'`: its refresh is still running (try again shortly).
   */
  async usable(owner: CredentialOwner, waitMs = STALE_WAIT_MS): Promise<ActiveCredential | 'late' | null> {
    const read = await this.read(owner);
    if (read !== 'stale') return read;
    const nudged = await this.shared(owner, 'refresh', waitMs);
    const hit = nudged && nudged !== 'pending' ? await this.readActive(owner) : null;
    if (hit) return hit;
    return nudged === null ? null : 'late';
  }

  /**
   * Like readActive, but tells an active credential whose token ran out (its refresh is late: the provider or
   * the worker is away) from one that does not exist: `'stale'`.
   */
  async read(owner: CredentialOwner, opts: { quiet?: boolean } = {}): Promise<ActiveCredential | 'stale' | null> {
    const entry = await this.activeRow(owner);
    const row = entry.row;
    if (!row) return null;
    if (!row.access_token) return 'stale';
    const expiresAt = row.access_expires_at === null ? null : toDate(row.access_expires_at);
    if (expiresAt && expiresAt.getTime() - Date.now() < MIN_REMAINING_MS) return 'stale';
    let accessToken: string;
    let proofKey: ProofKey | undefined;
    try {
      accessToken = entry.token ??= this.vault.decrypt(row.access_token, secretContext(owner, row.id, 'access_token'));
      // Bound tokens only (the row's token type says so): a key kept beside a bearer token is not used.
      const stored = isBound(row.token_type) ? row.dpop_key : null;
      if (stored)
        proofKey = await (entry.proofKey ??= importProofKey(this.vault.decrypt(stored, secretContext(owner, row.id, 'dpop_key'))));
    } catch (err) {
      // Tampered, moved between rows, or encrypted with a key that is no longer configured.
      throw new BrokerError('credential_unreadable', `the stored credential cannot be decrypted (${(err as VaultError).code ?? 'error'})`);
    }
    // `quiet`: a look, not a use (the reconnect page asking whether it is still connected).
    if (!opts.quiet) this.noteUse(row.id);
    return {
      credentialId: row.id,
      accessToken,
      tokenType: row.token_type ?? 'bearer',
      expiresAt,
      scope: row.scope ?? null,
      ...(proofKey ? { proofKey } : {}),
    };
  }

  /**
   * The row behind the hot path, from the database or from a short-lived per-process cache (`hotCacheMs`) that
   * also keeps the row's token once decrypted: an AES-GCM decipher costs more than the rest of a cached read,
   * and the token is in this process's memory while any request uses it anyway. A refresh or revocation is
   * therefore seen here at most `hotCacheMs` late by other API processes, at once by this one (`forget`).
   */
  private async activeRow(owner: CredentialOwner): Promise<HotEntry> {
    const key = `${owner.agentId}\0${owner.userId}\0${owner.toolId}`;
    const ttl = this.settings.hotCacheMs ?? 0;
    const cached = ttl > 0 ? this.hot.get(key) : undefined;
    if (cached && cached.until > Date.now()) return cached;
    const entry: HotEntry = { row: await this.records.activeRow(owner), until: Date.now() + ttl };
    if (ttl > 0) {
      if (this.hot.size >= 50_000) this.hot.clear();
      this.hot.set(key, entry);
    }
    return entry;
  }

  /** Records that a credential was used, at most once a minute per credential and process, off the hot path. */
  private noteUse(credentialId: string): void {
    const now = Date.now();
    if (now - (this.usedAt.get(credentialId) ?? 0) < 60_000) return;
    if (this.usedAt.size >= 50_000) this.usedAt.clear();
    this.usedAt.set(credentialId, now);
    this.records.markUsed(credentialId).catch(() => undefined);
  }

  /** Drops this process's cached read of a credential (after something changed it). */
  forget(owner: CredentialOwner): void {
    this.hot.delete(`${owner.agentId}\0${owner.userId}\0${owner.toolId}`);
  }

  /**
   * At most one Temporal request per credential and kind in flight in this process, however many readers ask:
   * each waits for it at most `waitMs`, then hears 'pending' (and asks again later) while it goes on.
   */
  async shared(owner: CredentialOwner, kind: 'ensure' | 'refresh', waitMs: number): Promise<CredentialView | null | 'pending'> {
    const key = `${kind}\0${owner.agentId}\0${owner.userId}\0${owner.toolId}`;
    let flight = this.flights.get(key);
    if (!flight) {
      flight = (kind === 'ensure' ? this.ensureAuthorization(owner) : this.refreshNow(owner)).finally(() => this.flights.delete(key));
      this.flights.set(key, flight);
      // Whoever waits sees the failure; one nobody waits for any more must not be an unhandled rejection.
      flight.catch(() => {});
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), waitMs)));
    try {
      return await Promise.race([flight, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A credential no one needs to consent to: machine access, or a user's exchanged enterprise identity. */
  obtainsItself(owner: CredentialOwner): boolean {
    return this.workflows.obtainsItself(owner);
  }

  /** Temporal requests in flight in this process (see `shared`). */
  get inFlight(): number {
    return this.flights.size;
  }

  /** Starts the credential's workflow if none runs, and returns what the agent should do next. */
  ensureAuthorization(owner: CredentialOwner): Promise<CredentialView> {
    this.forget(owner);
    return this.workflows.ensure(owner);
  }

  refreshNow(owner: CredentialOwner): Promise<CredentialView | null> {
    this.forget(owner);
    return this.workflows.refreshNow(owner);
  }

  /** Step-up: a new authorization for wider scopes while the current credential stays in use. */
  stepUp(owner: CredentialOwner, scopes: string[]): Promise<CredentialView | null> {
    return this.workflows.stepUp(owner, scopes);
  }

  /** Revokes and ends the running workflow; null when there is none. */
  async revoke(owner: CredentialOwner, request: RevokeRequest): Promise<CredentialView | null> {
    this.forget(owner);
    try {
      return await this.workflows.revoke(owner, request);
    } finally {
      // A read during the revocation may have cached the row again.
      this.forget(owner);
    }
  }

  query(owner: CredentialOwner): Promise<CredentialView | null> {
    return this.workflows.query(owner);
  }
}
