import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { applyProvider, loadProviderCatalog, type ProviderCatalog } from './providers.js';
import { quirksSchema } from './provider-quirks.js';

export class ToolConfigError extends Error {
  readonly code = 'invalid_tool_config';
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

const url = z.url({ error: 'must be an absolute URL' });

/**
 * The enterprise identity provider of an `enterprise` or `token_exchange` tool: where the broker exchanges the user's
 * identity (RFC 8693), as its own client there. Its issuer must also be a trusted issuer of user identities.
 */
const identityProviderSchema = z
  .object({
    issuer: url,
    /** Default: discovered from the issuer's metadata. */
    token_url: url.optional(),
    client_id: z.string().min(1),
    client_secret: z.string().min(1).optional(),
    token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
    /** What the presented identity is (default: an OpenID Connect ID token). */
    subject_token_type: z.enum(['id_token', 'jwt', 'access_token']).optional(),
  })
  .strict();

const oauth2AuthSchema = z
  .object({
    /**
     * oauth2: each user's own delegated credential (consent in a browser); client_credentials: the tool's machine
     * token per agent; enterprise: the user's enterprise identity exchanged for an identity assertion grant (ID-JAG)
     * and redeemed at the tool's authorization server, no consent page; token_exchange: the user's identity
     * exchanged at the identity provider for a token for the tool (RFC 8693, on-behalf-of).
     */
    type: z.enum(['oauth2', 'client_credentials', 'enterprise', 'token_exchange']),
    identity_provider: identityProviderSchema.optional(),
    /** client_credentials: extra token request parameters some servers need. */
    audience: z.string().optional(),
    resource: z.url().optional(),
    issuer: url.optional(),
    authorization_url: url.optional(),
    token_url: url.optional(),
    revocation_url: url.optional(),
    client_id: z.string().min(1).optional(),
    client_secret: z.string().min(1).optional(),
    /** private_key_jwt: the tool's own signing key (PKCS#8 PEM, from the environment); default: one the broker derives. */
    client_private_key: z.string().includes('PRIVATE KEY', { message: 'must be a PKCS#8 PEM private key' }).optional(),
    /** The algorithm of that key (default ES256). */
    client_assertion_alg: z.enum(['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA']).optional(),
    scopes: z.union([z.array(z.string().min(1)), z.string()]).optional(),
    /**
     * DPoP (RFC 9449), where the server supports it: tokens bound to a key only the broker holds, usable through the
     * gateway only. Default: when agents do not read this tool's tokens (expose_token false, EXPOSE_TOKENS=false).
     */
    dpop: z.boolean().optional(),
    authorization_params: z.record(z.string(), z.string()).optional(),
    ...quirksSchema.shape,
  })
  .strict();

const manifestEntrySchema = z
  .object({
    name: z.string().min(1),
    description: z.string().min(1),
    inputSchema: z.record(z.string(), z.unknown()),
  })
  .strict();

const toolSchema = z
  .object({
    id: z.string().regex(ID, 'must be 1-100 letters, digits, dot, dash or underscore, starting with a letter or digit'),
    provider: z.string().optional(),
    name: z.string().optional(),
    description: z.string().optional(),
    tool_type: z.enum(['mcp', 'api']),
    connection_params: z
      .object({
        type: z.enum(['sse', 'streamable-http', 'http']),
        url,
        /** Fixed headers the gateway adds to every upstream request (an API version); never credentials. */
        headers: z
          .record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/), z.string().max(500))
          .refine((h) => !Object.keys(h).some((k) => /^(authorization|cookie|host|proxy-authorization)$/i.test(k)), {
            message: 'may not set Authorization, Cookie, Host or Proxy-Authorization',
          })
          .optional(),
      })
      .strict(),
    /** False: the credentials API never returns this tool's access token; agents use it through the gateway only. */
    expose_token: z.boolean().optional(),
    /** False: a re-authorization may land on another upstream account than the credential had (default: refused). */
    pin_account: z.boolean().optional(),
    auth: oauth2AuthSchema,
    manifest: z.array(manifestEntrySchema).default([]),
  })
  .strict()
  .superRefine((tool, ctx) => {
    const auth = tool.auth;
    if (auth.type === 'enterprise' || auth.type === 'token_exchange') {
      if (!auth.identity_provider)
        ctx.addIssue({ code: 'custom', path: ['auth', 'identity_provider'], message: `is required for ${auth.type}` });
      // ID-JAG: the identity provider names this client id in the grant, and the tool's server checks it is the caller.
      if (auth.type === 'enterprise' && !auth.client_id)
        ctx.addIssue({ code: 'custom', path: ['auth', 'client_id'], message: 'is required for enterprise (the client the grant is for)' });
      if (auth.type === 'enterprise' && tool.tool_type !== 'mcp' && !auth.issuer && !auth.token_url)
        ctx.addIssue({
          code: 'custom',
          path: ['auth'],
          message: 'enterprise needs issuer or token_url (or an MCP server to discover them from)',
        });
      return;
    }
    if (auth.identity_provider)
      ctx.addIssue({ code: 'custom', path: ['auth', 'identity_provider'], message: 'is only for enterprise and token_exchange' });
    if (auth.type === 'client_credentials') {
      // An MCP server known by its URL alone: its token endpoint is discovered (the MCP client-credentials extension).
      if (!auth.issuer && !auth.token_url && tool.tool_type !== 'mcp')
        ctx.addIssue({
          code: 'custom',
          path: ['auth'],
          message: 'client_credentials needs issuer or token_url (or an MCP server to discover them from)',
        });
      if (!auth.client_id || (!auth.client_secret && auth.token_endpoint_auth_method !== 'private_key_jwt'))
        ctx.addIssue({
          code: 'custom',
          path: ['auth'],
          message: 'client_credentials needs client_id and client_secret (or token_endpoint_auth_method: private_key_jwt)',
        });
      return;
    }
    const endpoints = Boolean(auth.authorization_url || auth.token_url);
    // With an issuer, single endpoints may override the discovered ones; without one, both are needed.
    if (!auth.issuer && endpoints && !(auth.authorization_url && auth.token_url)) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'give both authorization_url and token_url, or neither' });
    }
    // An MCP server with nothing but its URL: endpoints are discovered and the client registers itself.
    if (tool.tool_type === 'mcp' && !auth.issuer && !endpoints) return;
    if (!auth.issuer && !endpoints) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth'],
        message: 'give either issuer (to discover endpoints) or both authorization_url and token_url',
      });
    }
    if (!auth.client_id) ctx.addIssue({ code: 'custom', path: ['auth', 'client_id'], message: 'is required' });
  });

const fileSchema = z.object({ tools: z.array(z.unknown()).default([]) }).strict();

export type ToolConfig = z.infer<typeof toolSchema>;
export type OAuth2AuthConfig = z.infer<typeof oauth2AuthSchema>;

export interface Tool {
  id: string;
  provider?: string | undefined;
  name: string;
  toolType: ToolConfig['tool_type'];
  connection: ToolConfig['connection_params'];
  auth: OAuth2AuthConfig & { scopeList: string[] };
  manifest: ToolConfig['manifest'];
  /** Undefined: the global default (EXPOSE_TOKENS). */
  exposeToken?: boolean | undefined;
  /** Refuse a re-authorization that lands on another upstream account (default true). */
  pinAccount: boolean;
}

/** The credential comes from the user's enterprise identity, exchanged by the broker: no browser, no consent page. */
export function exchangesIdentity(tool: Pick<Tool, 'auth'>): boolean {
  return tool.auth.type === 'enterprise' || tool.auth.type === 'token_exchange';
}

export class ToolRegistry {
  private readonly tools = new Map<string, Tool>();

  constructor(tools: Tool[] = []) {
    for (const t of tools) this.add(t);
  }

  add(tool: Tool): void {
    if (this.tools.has(tool.id)) throw new ToolConfigError(`tool ${tool.id}: defined twice`);
    this.tools.set(tool.id, tool);
  }

  get(id: string): Tool | undefined {
    return this.tools.get(id);
  }

  list(): Tool[] {
    return [...this.tools.values()];
  }
}

/** Replaces `${NAME}` with the environment's value; a missing variable is an error naming it. */
export function expandEnv(text: string, env: Record<string, string | undefined>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const value = env[name];
    if (value === undefined) throw new ToolConfigError(`environment variable ${name} is referenced but not set`);
    return value;
  });
}

export function parseTools(
  yamlText: string,
  env: Record<string, string | undefined> = process.env,
  catalog: ProviderCatalog = new Map(),
): Tool[] {
  let doc: unknown;
  try {
    doc = parseYaml(yamlText) ?? {};
  } catch (err) {
    throw new ToolConfigError(`tools config is not valid YAML: ${(err as Error).message}`);
  }
  const file = fileSchema.safeParse(doc);
  if (!file.success) throw new ToolConfigError(`tools config: ${formatIssues(file.error.issues)}`);
  const seen = new Set<string>();
  return file.data.tools.map((raw, index) => {
    const label = typeof raw === 'object' && raw && 'id' in raw ? `tool ${String((raw as { id: unknown }).id)}` : `tools[${index}]`;
    const expanded = applyProvider(expandDeep(raw, env, label), catalog, label);
    const parsed = toolSchema.safeParse(expanded);
    if (!parsed.success) throw new ToolConfigError(`${label}: ${formatIssues(parsed.error.issues)}`);
    const t = parsed.data;
    if (seen.has(t.id)) throw new ToolConfigError(`${label}: defined twice`);
    seen.add(t.id);
    t.manifest.forEach((entry, i) => validateInputSchema(entry.inputSchema, `${label}: manifest[${i}] (${entry.name}).inputSchema`));
    return toTool(t);
  });
}

export function loadToolsFile(
  path: string,
  env: Record<string, string | undefined> = process.env,
  catalog: ProviderCatalog = loadProviderCatalog(),
): Tool[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ToolConfigError(`cannot read tools config ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseTools(text, env, catalog);
}

export function toTool(t: ToolConfig): Tool {
  const scopes = t.auth.scopes;
  const scopeList = Array.isArray(scopes) ? scopes : (scopes ?? '').split(/[\s,]+/).filter(Boolean);
  return {
    id: t.id,
    provider: t.provider,
    name: t.name ?? t.id,
    toolType: t.tool_type,
    connection: t.connection_params,
    auth: { ...t.auth, scopeList },
    manifest: t.manifest,
    exposeToken: t.expose_token,
    pinAccount: t.pin_account ?? true,
  };
}

const ajv = new Ajv({ strict: false, validateSchema: true });
const ajv2020 = new Ajv2020({ strict: false, validateSchema: true });

function validateInputSchema(schema: Record<string, unknown>, label: string): void {
  const is2020 = typeof schema.$schema === 'string' && schema.$schema.includes('2020-12');
  const validator = is2020 ? ajv2020 : ajv;
  if (!validator.validateSchema(schema)) {
    throw new ToolConfigError(`${label}: not a valid JSON Schema: ${validator.errorsText(validator.errors)}`);
  }
}

function expandDeep(value: unknown, env: Record<string, string | undefined>, label: string): unknown {
  if (typeof value === 'string') {
    try {
      return expandEnv(value, env);
    } catch (err) {
      throw new ToolConfigError(`${label}: ${(err as Error).message}`);
    }
  }
  if (Array.isArray(value)) return value.map((v) => expandDeep(v, env, label));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandDeep(v, env, label)]));
  }
  return value;
}

function formatIssues(issues: z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}
