import { SchemaMigration } from './schema-migration.js';

/**
 * The upstream account a credential's consent landed on (its id is pinned for re-authorizations), and when an agent
 * last used the credential (recorded at most once a minute).
 */
export class Migration20261128120000_credential_account extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().alterTable('credentials', (t) => {
        t.string('account_id', 300);
        t.string('account_name', 300);
        t.timestamp('last_used_at', { useTz: true });
      }),
    );
  }

  override down(): void {
    this.addStatements(
      this.schema().alterTable('credentials', (t) => {
        t.dropColumn('account_id');
        t.dropColumn('account_name');
        t.dropColumn('last_used_at');
      }),
    );
  }
}
