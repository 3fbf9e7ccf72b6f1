/** Asks an oidc-provider's introspection endpoint (RFC 7662) about a token, as a client authenticating with HTTP Basic. */
export function introspectAt(issuer: string, client: { id: string; secret: string }, token: string, hint?: string): Promise<Response> {
  return fetch(`${issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token, ...(hint ? { token_type_hint: hint } : {}) }),
  });
}
