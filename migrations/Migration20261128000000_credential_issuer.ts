import { SchemaMigration } from './schema-migration.js';

/**
 * The authorization server that issued a credential's tokens: refresh and revocation go only there, whatever an MCP
 * server names later (a refresh token is never sent to another server).
 */
export class Migration20261128000000_credential_issuer extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().alterTable('credentials', (t) => {
        t.text('issuer');
      }),
    );
  }

  override down(): void {
    this.addStatements(
      this.schema().alterTable('credentials', (t) => {
        t.dropColumn('issuer');
      }),
    );
  }
}
