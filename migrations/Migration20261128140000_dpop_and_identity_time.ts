import { SchemaMigration } from './schema-migration.js';

/**
 * Each credential's DPoP key (a private JWK, encrypted), where its authorization server binds tokens to one; and when
 * each presented identity was issued (an identity older than a revocation does not restore the credential).
 */
export class Migration20261128140000_dpop_and_identity_time extends SchemaMigration {
  override up(): void {
    this.addStatements(this.schema().alterTable('credentials', (t) => void t.text('dpop_key')));
    this.addStatements(this.schema().alterTable('presented_identities', (t) => void t.timestamp('issued_at', { useTz: true })));
  }

  override down(): void {
    this.addStatements(this.schema().alterTable('credentials', (t) => void t.dropColumn('dpop_key')));
    this.addStatements(this.schema().alterTable('presented_identities', (t) => void t.dropColumn('issued_at')));
  }
}
