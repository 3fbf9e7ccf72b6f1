import type * as oidc from 'openid-client';
import { ownerOf, secretContext } from '../lib/credentials/records.js';
import type { Credential } from '../lib/db/entities.js';
import type { ToolClient } from '../lib/oauth/client.js';
import { importProofKey, newProofKey, tokenRequestProof, type ProofKey } from '../lib/oauth/dpop.js';
import type { Vault } from '../lib/vault/crypto.js';

/** A token request's DPoP proof (see proofFor): the key, openid-client's options, and a new key's column. */
export interface TokenRequestProof {
  key?: ProofKey;
  options: oidc.DPoPOptions;
  changes: { dpopKey?: string };
}

/**
 * DPoP: the credential's key (made on first use, kept encrypted with the tokens bound to it) and the token request's
 * proof; `changes` carries a new key into the commit of the tokens it binds. Nothing where the server does not bind.
 */
export async function proofFor(vault: Vault, credential: Credential, client: ToolClient): Promise<TokenRequestProof> {
  if (!client.dpop) return { options: {}, changes: {} };
  const context = secretContext(ownerOf(credential), credential.id, 'dpop_key');
  const stored = credential.dpopKey ? vault.decrypt(credential.dpopKey, context) : await newProofKey();
  const key = await importProofKey(stored);
  return {
    key,
    options: tokenRequestProof(client.config, key),
    changes: credential.dpopKey ? {} : { dpopKey: vault.encrypt(stored, context) },
  };
}
