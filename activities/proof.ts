import type * as oidc from 'openid-client';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import type { Credential } from '../lib/db/entities.js';
import type { ToolClient } from '../lib/oauth/client.js';
import { importProofKey, isBound, newProofKey, tokenRequestProof, type ProofKey } from '../lib/oauth/dpop.js';
import type { Vault } from '../lib/vault/crypto.js';

/** A token request's DPoP proof (see proofFor): the key, openid-client's options, and what the answer means for the row. */
export interface TokenRequestProof {
  key?: ProofKey;
  options: oidc.DPoPOptions;
  /** The key column after the server's answer: kept (or stored) when it bound the tokens, cleared when it did not. */
  changesFor(tokens: { token_type?: string }): { dpopKey?: string | null };
}

/** openid-client's DPoP handles, per configuration and credential: each keeps the server's nonce between requests. */
const handles = new WeakMap<oidc.Configuration, Map<string, oidc.DPoPOptions>>();

/**
 * DPoP: the credential's key and the token request's proof. A credential whose tokens are bound keeps proving its
 * key (a bound refresh token needs it) whatever the tool or the server says today; one whose tokens are not starts
 * only where the client binds now (see bindsWithDpop). The key is kept only if the server really bound the tokens.
 */
export async function proofFor(vault: Vault, credential: Credential, client: ToolClient): Promise<TokenRequestProof> {
  if (!credential.dpopKey && !client.dpop) return { options: {}, changesFor: () => ({}) };
  const context = secretContext(ownerOf(credential), credential.id, 'dpop_key');
  const stored = credential.dpopKey ? vault.decrypt(credential.dpopKey, context) : await newProofKey();
  const key = await importProofKey(stored);
  return {
    key,
    options: handleFor(client.config, credential, key),
    changesFor: (tokens) => {
      if (isBound(tokens.token_type)) return credential.dpopKey ? {} : { dpopKey: vault.encrypt(stored, context) };
      return credential.dpopKey ? { dpopKey: null } : {};
    },
  };
}

/** The credential's handle for this configuration; a key not stored yet (its first request) gets a fresh one. */
function handleFor(config: oidc.Configuration, credential: Credential, key: ProofKey): oidc.DPoPOptions {
  if (!credential.dpopKey) return tokenRequestProof(config, key);
  let perConfig = handles.get(config);
  if (!perConfig) handles.set(config, (perConfig = new Map()));
  if (perConfig.size >= 10_000) perConfig.clear();
  // Keyed by the stored (encrypted) key: a credential whose key changed gets a new handle.
  const id = `${credential.id}\0${credential.dpopKey}`;
  const options = perConfig.get(id) ?? tokenRequestProof(config, key);
  perConfig.set(id, options);
  return options;
}
