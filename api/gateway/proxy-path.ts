import type { Tool } from '../../lib/tools.js';
import { ApiError } from '../errors.js';

/** Where the HTTP proxy is mounted. */
export const PROXY_PREFIX = '/api/v1/proxy';

const ENCODED_ESCAPE = /%(2f|5c|40|00)/i;

/**
 * The upstream URL for a raw request URL under the proxy (`/api/v1/proxy/{toolId}[/{path}][?query]`, as the agent
 * sent it): the tool's base URL with the path and query appended as they came (never resolved against it),
 * refused when anything in the raw path could climb out of the base or name another host.
 */
export function proxyTarget(tool: Tool, rawUrl: string): URL {
  const queryAt = rawUrl.indexOf('?');
  const rawPath = queryAt < 0 ? rawUrl : rawUrl.slice(0, queryAt);
  const query = queryAt < 0 ? '' : rawUrl.slice(queryAt);
  // After /api/v1/proxy: /{toolId}[/{path}]
  const afterBase = rawPath.slice(PROXY_PREFIX.length);
  const slash = afterBase.indexOf('/', 1);
  const rest = slash < 0 ? '' : afterBase.slice(slash);
  return joinUnder(tool.connection.url, rest, query);
}

/** `base` + `rest` + `query`, or 400 invalid_proxy_path when the result could leave `base`. */
export function joinUnder(baseUrl: string, rest: string, query: string): URL {
  const invalid = (why: string) => new ApiError('invalid_proxy_path', `the path is not allowed: ${why}`);
  if (rest.includes('\\') || rest.includes('@') || ENCODED_ESCAPE.test(rest))
    throw invalid('backslashes, @ and encoded slashes are refused');
  if (rest.startsWith('//') || rest.includes('://')) throw invalid('absolute and scheme-relative paths are refused');
  if (query.includes('#')) throw invalid('fragments are refused');
  for (const segment of rest.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw invalid('malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..' || /[\\/]/.test(decoded)) throw invalid('dot segments are refused');
  }
  const base = parsedBase(baseUrl);
  const basePath = base.path;
  const target = new URL(`${base.origin}${basePath}${rest}${query}`);
  if (target.origin !== base.origin || !(target.pathname === basePath || target.pathname.startsWith(`${basePath}/`) || basePath === '')) {
    throw invalid('it leaves the base URL');
  }
  return target;
}

/** Tools' base URLs, parsed once (a tool's URL is the operator's configuration: few, and rarely new). */
const bases = new Map<string, { origin: string; path: string }>();

function parsedBase(baseUrl: string): { origin: string; path: string } {
  let base = bases.get(baseUrl);
  if (!base) {
    const url = new URL(baseUrl);
    base = { origin: url.origin, path: url.pathname.replace(/\/+$/, '') };
    if (bases.size >= 1000) bases.clear();
    bases.set(baseUrl, base);
  }
  return base;
}

/** The tool id in a raw proxy URL (percent-decoded, as Express's route parameter), or null. */
export function proxyToolId(rawUrl: string): string | null {
  const rest = rawUrl.slice(PROXY_PREFIX.length + 1);
  const end = rest.search(/[/?]/);
  const segment = end < 0 ? rest : rest.slice(0, end);
  try {
    return segment ? decodeURIComponent(segment) : null;
  } catch {
    return null;
  }
}
