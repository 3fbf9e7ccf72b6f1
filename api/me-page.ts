import type { Credential } from '../lib/db/entities.js';
import { escapeHtml } from './html.js';
import { accountView } from './views.js';

/** One connection as the user sees it (and as the JSON answer gives it): never a token. */
export function connectionView(row: Credential, toolName: string): Record<string, unknown> {
  return {
    credential_id: row.id,
    tool_id: row.toolId,
    tool_name: toolName,
    agent_id: row.agentId,
    account: accountView(row),
    scope: row.scope ?? null,
    status: row.status,
    connected_at: row.acquiredAt?.toISOString() ?? null,
    last_used_at: row.lastUsedAt?.toISOString() ?? null,
    expires_at: row.ttlExpiresAt?.toISOString() ?? null,
  };
}

const STYLE = `body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #ddd;font-size:.9rem}
button{cursor:pointer}.muted{color:#666}form{margin:0}.danger{color:#b42318}`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

const when = (iso: unknown): string => (typeof iso === 'string' ? escapeHtml(iso.replace('T', ' ').slice(0, 16)) + ' UTC' : '—');

/** The connections page: a row per live credential with a Disconnect button, and "Disconnect everything". */
export function connectionsPage(userId: string, rows: Record<string, unknown>[], csrf: string, notice?: string): string {
  const hidden = `<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">`;
  const body = rows.length
    ? `<table><thead><tr><th>Tool</th><th>Agent</th><th>Account</th><th>Scopes</th><th>Status</th><th>Connected</th><th>Last used</th><th>Expires</th><th></th></tr></thead><tbody>
${rows
  .map((r) => {
    const account = r.account as { id: string; name: string | null } | null;
    return `<tr data-credential="${escapeHtml(String(r.credential_id))}"><td>${escapeHtml(String(r.tool_name))}</td><td>${escapeHtml(String(r.agent_id))}</td>
<td>${account ? escapeHtml(account.name ?? account.id) : '<span class="muted">unknown</span>'}</td><td>${escapeHtml(String(r.scope ?? ''))}</td>
<td>${escapeHtml(String(r.status))}</td><td>${when(r.connected_at)}</td><td>${when(r.last_used_at)}</td><td>${when(r.expires_at)}</td>
<td><form method="post" action="connections/${escapeHtml(String(r.credential_id))}/disconnect">${hidden}<button type="submit">Disconnect</button></form></td></tr>`;
  })
  .join('\n')}</tbody></table>
<form method="post" action="connections/disconnect-all" style="margin-top:1.5rem">${hidden}<button type="submit" class="danger">Disconnect everything</button></form>`
    : '<p class="muted">No agent holds access to any of your accounts.</p>';
  const flash = notice ? `<p role="status">${escapeHtml(notice)}</p>` : '';
  return page(
    'Your connections',
    `<h1>Your connections</h1><p class="muted">Signed in as ${escapeHtml(userId)}. These agents can act as you at these tools; disconnecting revokes the access at the provider.</p>${flash}${body}`,
  );
}

/** Development mode only: who is at this browser (production takes the gateway's signed identity instead). */
export function signInPage(): string {
  return page(
    'Your connections',
    `<h1>Your connections</h1><p class="muted">Development mode: say who you are (production uses your organization's sign-in).</p>
<form method="post" action="connections/session"><label>User id <input name="user" required maxlength="200"></label> <button type="submit">Continue</button></form>`,
  );
}

/** The page's headers: no scripts at all, forms only to this origin, never cached, never framed. */
export const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
