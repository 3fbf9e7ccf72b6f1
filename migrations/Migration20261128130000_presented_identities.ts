import { SchemaMigration } from './schema-migration.js';

/** Enterprise identities agents present for their users (encrypted), which ID-JAG and token-exchange tools exchange. */
export class Migration20261128130000_presented_identities extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().createTable('presented_identities', (t) => {
        t.string('id', 64).primary();
        t.string('agent_id', 200).notNullable();
        t.string('user_id', 200).notNullable();
        t.text('issuer').notNullable();
        t.text('token').notNullable();
        t.timestamp('expires_at', { useTz: true }).notNullable();
        t.timestamp('updated_at', { useTz: true }).notNullable();
      }),
    );
  }

  override down(): void {
    this.addStatements(this.schema().dropTable('presented_identities'));
  }
}
