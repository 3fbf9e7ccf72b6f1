import * as oidc from 'openid-client';
import type { Tool } from '../tools.js';
import type { OAuthClients, ToolClient } from './client.js';

/** RFC 8693 token exchange and RFC 7523 JWT bearer grants, and the token types of the identity assertion grant. */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_TYPES = {
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_jag: 'urn:ietf:params:oauth:token-type:id-jag',
} as const;

/** Which server refused, for the audit trail and the agent: the identity provider or the tool's authorization server. */
export class ExchangeStepError extends Error {
  constructor(
    readonly step: 'identity_provider' | 'authorization_server',
    readonly cause: unknown,
  ) {
    super(`the ${step.replace('_', ' ')} refused the exchange`);
  }
}

/** A token answer that is not what was asked for (an identity provider that ignored `requested_token_type`). */
export class UnexpectedTokenTypeError extends Error {
  readonly code = 'unexpected_token_type';
}

/**
 * The tool's token for one user, from the identity they presented — no browser, no consent page:
 * - `token_exchange`: the identity provider exchanges it for an access token for the tool (RFC 8693, on behalf of);
 * - `enterprise`: the identity provider exchanges it for an identity assertion grant (ID-JAG) whose audience is the
 *   tool's authorization server and whose resource is the tool, which that server redeems for an access token (RFC
 *   7523 JWT bearer grant, the broker authenticating as the client the grant names). The grant lives only here.
 */
export async function exchangeIdentity(
  oauth: OAuthClients,
  tool: Tool,
  subjectToken: string,
  /** The issued token's DPoP proof (the last step's server binds it to the credential's key). */
  proof: oidc.DPoPOptions = {},
): Promise<oidc.TokenEndpointResponse> {
  const idp = await oauth.forIdentityProvider(tool);
  const { auth } = tool;
  const scope: Record<string, string> = auth.scopeList.length ? { scope: auth.scopeList.join(auth.scope_separator ?? ' ') } : {};
  const subject = {
    subject_token: subjectToken,
    subject_token_type: TOKEN_TYPES[auth.identity_provider?.subject_token_type ?? 'id_token'],
  };
  if (auth.type === 'token_exchange') {
    return step('identity_provider', () =>
      oidc.genericGrantRequest(
        idp.config,
        TOKEN_EXCHANGE,
        {
          ...subject,
          requested_token_type: TOKEN_TYPES.access_token,
          ...(auth.audience ? { audience: auth.audience } : {}),
          ...(auth.resource ? { resource: auth.resource } : {}),
          ...scope,
        },
        proof,
      ),
    );
  }
  const server: ToolClient = await oauth.forTool(tool);
  const resource = auth.resource ?? server.resource ?? tool.connection.url;
  const grant = await step('identity_provider', () =>
    oidc.genericGrantRequest(idp.config, TOKEN_EXCHANGE, {
      ...subject,
      requested_token_type: TOKEN_TYPES.id_jag,
      audience: server.config.serverMetadata().issuer,
      resource,
      ...scope,
    }),
  );
  if (grant.issued_token_type !== TOKEN_TYPES.id_jag)
    throw new UnexpectedTokenTypeError('the identity provider did not issue an identity assertion grant');
  return step('authorization_server', () =>
    oidc.genericGrantRequest(server.config, JWT_BEARER, { assertion: grant.access_token, ...scope }, proof),
  );
}

async function step<T>(which: ExchangeStepError['step'], call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw new ExchangeStepError(which, err);
  }
}
