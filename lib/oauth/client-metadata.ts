/**
 * The broker's OAuth Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-document, as the MCP
 * authorization specification 2025-11-25 uses it): the document's own HTTPS URL is our client_id at every
 * authorization server that supports such documents, so no registration is needed or stored there.
 */
export interface ClientMetadataDocument {
  client_id: string;
  client_name: string;
  client_uri?: string;
  redirect_uris: string[];
  grant_types: string[];
  response_types: string[];
  /** A public client: a document can hold no secret, so PKCE protects the code and nothing authenticates us. */
  token_endpoint_auth_method: 'none';
  application_type: 'web';
}

/** What the broker is as an OAuth client, wherever it describes itself (registration or metadata document). */
export function brokerClientMetadata(redirectUri: string) {
  return {
    client_name: 'Agent credential broker',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    // Required by the 2026-07-28 registration rules (and what the metadata document always said).
    application_type: 'web' as const,
  };
}

export function clientMetadataDocument(clientId: string, redirectUri: string, publicOrigin: string): ClientMetadataDocument {
  return {
    client_id: clientId,
    ...brokerClientMetadata(redirectUri),
    // Authorization servers accept only https web URIs in a metadata document.
    ...(publicOrigin.startsWith('https:') ? { client_uri: publicOrigin } : {}),
    token_endpoint_auth_method: 'none',
  };
}
