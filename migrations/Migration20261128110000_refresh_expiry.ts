import { SchemaMigration } from './schema-migration.js';

/** When a credential's refresh token dies (the provider's `refresh_token_expires_in`, or the catalog's lifetime). */
export class Migration20261128110000_refresh_expiry extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().alterTable('credentials', (t) => {
        t.timestamp('refresh_expires_at', { useTz: true });
      }),
    );
  }

  override down(): void {
    this.addStatements(
      this.schema().alterTable('credentials', (t) => {
        t.dropColumn('refresh_expires_at');
      }),
    );
  }
}
