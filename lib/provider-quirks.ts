import { z } from 'zod';

/**
 * How an authorization server differs from the standard, declared once: a tool's `auth` and a catalog provider
 * accept the same fields, a tool that names a provider inherits them, and `lib/oauth/quirks.ts` applies them.
 * A new quirk is a field here, its effect there, and its value in `config/providers.yaml`.
 */
export const quirksSchema = z.object({
  /** Every scope a step-up may add (default: the tool's scopes; for MCP servers, what the server supports). */
  allowed_scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be a scope token')).optional(),
  /** How the token endpoint authenticates the client. */
  token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']).optional(),
  /** Scopes joined by this character (Slack: a comma). */
  scope_separator: z.string().length(1).optional(),
  /** Where the scopes go in the authorization request (Slack: `user_scope`). */
  scope_param: z.enum(['scope', 'user_scope']).optional(),
  /** How the token response is shaped (Slack: the user's token nested under `authed_user`). */
  token_response: z.enum(['standard', 'slack_authed_user']).optional(),
  /**
   * How long a refresh token lives from the consent when the provider does not say so in its answer (Google: 7 days
   * for apps in testing), so the credential's workflow can warn before it dies.
   */
  refresh_token_lifetime_seconds: z.number().int().positive().optional(),
  /** Where a provider that speaks no OpenID says who the user is (GitHub: https://api.github.com/user). */
  account_url: z.url({ error: 'must be an absolute URL' }).optional(),
  /** The fields of that answer that hold the account's id and its display name (default `id` and `login`). */
  account_fields: z
    .object({ id: z.string().min(1).max(60), name: z.string().min(1).max(60) })
    .strict()
    .optional(),
});

export type Quirks = z.infer<typeof quirksSchema>;
export const QUIRK_KEYS = Object.keys(quirksSchema.shape) as (keyof Quirks)[];

/** The quirks a provider sets, to be given to a tool that names it (the tool's own values win). */
export function quirksOf(provider: Quirks): Partial<Quirks> {
  return Object.fromEntries(QUIRK_KEYS.filter((k) => provider[k] !== undefined).map((k) => [k, provider[k]]));
}
