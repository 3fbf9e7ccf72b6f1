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
  let perConfig = handles.get(client.config);
  if (!perConfig) handles.set(client.config, (perConfig = new Map()));
  if (perConfig.size >= 10_000) perConfig.clear();
  const options = perConfig.get(`${credential.id}\0${stored}`) ?? tokenRequestProof(client.config, key);
  perConfig.set(`${credential.id}\0${stored}`, options);
  return {
    key,
    options,
    changesFor: (tokens) =>
      isBound(tokens.token_type)
        ? credential.dpopKey
          ? {}
          : { dpopKey: vault.encrypt(stored, context) }
        : credential.dpopKey
          ? { dpopKey: null }
          : {},
  };
}
