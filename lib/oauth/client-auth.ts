import * as oidc from 'openid-client';

/** How the broker authenticates at a token endpoint: none (PKCE only), the secret in the body, or HTTP Basic. */
export function clientAuthFor(method: string | undefined, secret: string | undefined): oidc.ClientAuth {
  if (!secret || method === 'none') return oidc.None();
  return method === 'client_secret_post' ? oidc.ClientSecretPost(secret) : clientSecretBasic(secret);
}

/**
 * HTTP Basic client authentication, its id and secret form-encoded first as RFC 6749 §2.3.1 says, with the
 * form encoding of the URL standard: letters, digits and `*-._` stay as they are. (openid-client also encodes
 * `-`, `.`, `_` and `~`, which servers that do not decode the credentials refuse: `pre-registered-client` arrived
 * as `pre%2Dregistered%2Dclient`.)
 */
export function clientSecretBasic(secret: string): oidc.ClientAuth {
  const encode = (value: string) => new URLSearchParams([['', value]]).toString().slice(1);
  return (_as, client, _body, headers) => {
    headers.set('authorization', `Basic ${Buffer.from(`${encode(client.client_id)}:${encode(secret)}`).toString('base64')}`);
  };
}
