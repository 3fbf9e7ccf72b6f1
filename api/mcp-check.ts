import { connectMcp } from './gateway/mcp-upstream.js';
import type { Tool } from '../lib/tools.js';

export interface ServerTool {
  name: string;
  description?: string | undefined;
  inputSchema: Record<string, unknown>;
}

export interface ManifestReport {
  status: 'ok' | 'drift';
  server_tools: string[];
  /** In the manifest, not on the server. */
  missing: string[];
  /** On both, but described or shaped differently. */
  changed: { name: string; fields: string[] }[];
  /** On the server, not in the manifest. */
  extra: string[];
}

/** Compares the tools an MCP server lists with a tool's manifest: names, descriptions, argument names. */
export function compareManifest(manifest: Tool['manifest'], server: ServerTool[]): ManifestReport {
  const byName = new Map(server.map((t) => [t.name, t]));
  const declared = new Set(manifest.map((m) => m.name));
  const missing = manifest.filter((m) => !byName.has(m.name)).map((m) => m.name);
  const changed = manifest.flatMap((m) => {
    const s = byName.get(m.name);
    if (!s) return [];
    const fields: string[] = [];
    if ((s.description ?? '') !== m.description) fields.push('description');
    if (!sameKeys(properties(m.inputSchema), properties(s.inputSchema))) fields.push('inputSchema.properties');
    if (!sameKeys(required(m.inputSchema), required(s.inputSchema))) fields.push('inputSchema.required');
    return fields.length ? [{ name: m.name, fields }] : [];
  });
  const extra = server.filter((s) => !declared.has(s.name)).map((s) => s.name);
  return {
    status: missing.length || changed.length || extra.length ? 'drift' : 'ok',
    server_tools: server.map((t) => t.name).sort(),
    missing,
    changed,
    extra,
  };
}

/** Connects to the MCP server (official SDK) through `fetchImpl`, which sends the user's credential, and lists its tools. */
export async function listServerTools(tool: Tool, fetchImpl: typeof fetch): Promise<ServerTool[]> {
  const client = await connectMcp(tool, fetchImpl, 'credential-broker');
  try {
    const tools: ServerTool[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      tools.push(
        ...page.tools.map((t) => ({ name: t.name, description: t.description, inputSchema: t.inputSchema as Record<string, unknown> })),
      );
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  } finally {
    await client.close();
  }
}

function properties(schema: Record<string, unknown>): string[] {
  const p = schema.properties;
  return p && typeof p === 'object' ? Object.keys(p) : [];
}

function required(schema: Record<string, unknown>): string[] {
  return Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === 'string') : [];
}

function sameKeys(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().every((k, i) => k === [...b].sort()[i]);
}
