import { randomUUID } from 'node:crypto';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { ClientRegistrationSchema } from '../db/entities.js';
import { fork, type Orm } from '../db/orm.js';
import type { SecretContext, Vault } from '../vault/crypto.js';

export interface RegisteredClient {
  clientId: string;
  clientSecret?: string;
  tokenEndpointAuthMethod: string;
}

/** Dynamic registrations are stored per issuer and redirect URI and reused; a changed issuer registers again. */
export class ClientRegistrations {
  constructor(
    private readonly orm: Orm,
    private readonly vault: Vault,
  ) {}

  async find(issuer: string, redirectUri: string): Promise<RegisteredClient | null> {
    const row = await fork(this.orm).findOne(ClientRegistrationSchema, { issuer, redirectUri });
    if (!row) return null;
    return {
      clientId: row.clientId,
      ...(row.clientSecret ? { clientSecret: this.vault.decrypt(row.clientSecret, context(row.id, issuer)) } : {}),
      tokenEndpointAuthMethod: row.tokenEndpointAuthMethod,
    };
  }

  /** Stores a new registration; when another process registered first, theirs wins and is returned. */
  async save(issuer: string, redirectUri: string, client: RegisteredClient): Promise<RegisteredClient> {
    const id = randomUUID();
    try {
      await fork(this.orm).insert(ClientRegistrationSchema, {
        id,
        issuer,
        redirectUri,
        clientId: client.clientId,
        clientSecret: client.clientSecret ? this.vault.encrypt(client.clientSecret, context(id, issuer)) : null,
        tokenEndpointAuthMethod: client.tokenEndpointAuthMethod,
        createdAt: new Date(),
      });
      return client;
    } catch (err) {
      if (err instanceof UniqueConstraintViolationException) return (await this.find(issuer, redirectUri))!;
      throw err;
    }
  }
}

/** Registration secrets belong to the broker, not to an agent: their own key derivation context. */
function context(id: string, issuer: string): SecretContext {
  return { agentId: '__broker__', userId: '__client_registration__', toolId: issuer, recordId: id, field: 'client_secret' };
}
