import type { Sandbox } from '../sandbox/provider.js';
import { SANDBOX_SCOPES } from '../sandbox/provider.js';

/**
 * Grants and refresh tokens minted directly in the sandbox provider (its own models, as a consent would
 * create them), so a benchmark can hold thousands of real, refreshable credentials without thousands of logins.
 */
export async function mintRefreshTokens(sandbox: Sandbox, accounts: string[]): Promise<string[]> {
  const { provider } = sandbox;
  const client = await provider.Client.find(sandbox.clientId);
  if (!client) throw new Error('sandbox client missing');
  const scope = SANDBOX_SCOPES.join(' ');
  const tokens: string[] = [];
  for (const accountId of accounts) {
    const grant = new provider.Grant({ accountId, clientId: sandbox.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({ client, accountId, grantId, gty: 'authorization_code', scope });
    tokens.push(await rt.save());
  }
  return tokens;
}
