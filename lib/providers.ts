import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { quirksOf, quirksSchema } from './provider-quirks.js';

/** The shipped catalog of well-known providers (config/providers.yaml). */
export const DEFAULT_CATALOG_PATH = resolve(import.meta.dirname, '..', 'config', 'providers.yaml');

export class ProviderCatalogError extends Error {
  readonly code = 'invalid_provider_catalog';
}

const url = z.url({ error: 'must be an absolute URL' });
const providerSchema = z
  .object({
    description: z.string(),
    issuer: url.optional(),
    authorization_url: url.optional(),
    token_url: url.optional(),
    revocation_url: url.optional(),
    default_scopes: z.array(z.string().min(1)).optional(),
    authorization_params: z.record(z.string(), z.string()).optional(),
    /** A remote MCP server: its URL is all that is needed. */
    mcp_url: url.optional(),
    connection_type: z.enum(['sse', 'streamable-http']).optional(),
    ...quirksSchema.shape,
  })
  .strict();

export type Provider = z.infer<typeof providerSchema>;
export type ProviderCatalog = Map<string, Provider>;

export function parseProviderCatalog(yamlText: string): ProviderCatalog {
  let doc: unknown;
  try {
    doc = parseYaml(yamlText);
  } catch (err) {
    throw new ProviderCatalogError(`provider catalog is not valid YAML: ${(err as Error).message}`);
  }
  const parsed = z
    .object({ providers: z.record(z.string().regex(/^[a-z0-9_]+$/), providerSchema) })
    .strict()
    .safeParse(doc);
  if (!parsed.success) {
    throw new ProviderCatalogError(`provider catalog: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return new Map(Object.entries(parsed.data.providers));
}

export function loadProviderCatalog(path = DEFAULT_CATALOG_PATH): ProviderCatalog {
  return parseProviderCatalog(readFileSync(path, 'utf8'));
}

/**
 * A tool that names a provider gets the provider's endpoints, scopes and quirks; what the tool itself says
 * wins (authorization parameters are merged).
 */
export function applyProvider(raw: unknown, catalog: ProviderCatalog, label: string): unknown {
  if (!raw || typeof raw !== 'object' || !('provider' in raw)) return raw;
  const tool = raw as Record<string, unknown> & { provider: unknown; auth?: Record<string, unknown> };
  const name = String(tool.provider);
  const p = catalog.get(name);
  if (!p) throw new ProviderCatalogError(`${label}: provider ${name} is not in the catalog (known: ${[...catalog.keys()].join(', ')})`);
  const auth = tool.auth ?? {};
  const defaults: Record<string, unknown> = {
    type: 'oauth2',
    ...(p.issuer ? { issuer: p.issuer } : {}),
    ...(p.authorization_url ? { authorization_url: p.authorization_url } : {}),
    ...(p.token_url ? { token_url: p.token_url } : {}),
    ...(p.revocation_url ? { revocation_url: p.revocation_url } : {}),
    ...(p.default_scopes ? { scopes: p.default_scopes } : {}),
    ...quirksOf(p),
  };
  const params = { ...p.authorization_params, ...(auth.authorization_params as Record<string, string> | undefined) };
  return {
    tool_type: p.mcp_url ? 'mcp' : 'api',
    connection_params: p.mcp_url
      ? { type: p.connection_type ?? 'streamable-http', url: p.mcp_url }
      : { type: 'http', url: new URL(p.authorization_url ?? p.issuer ?? 'https://invalid.example').origin },
    ...tool,
    auth: { ...defaults, ...auth, ...(Object.keys(params).length ? { authorization_params: params } : {}) },
  };
}
