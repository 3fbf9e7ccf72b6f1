import { SchemaMigration } from './schema-migration.js';

/** Dynamic client registrations, one per (issuer, redirect URI), secrets encrypted. */
export class Migration20261126020000_client_registrations extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().createTable('client_registrations', (t) => {
        t.uuid('id').primary();
        t.text('issuer').notNullable();
        t.text('redirect_uri').notNullable();
        t.text('client_id').notNullable();
        t.text('client_secret');
        t.string('token_endpoint_auth_method', 60).notNullable();
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.unique(['issuer', 'redirect_uri'], { indexName: 'client_registrations_issuer_redirect_unique' });
      }),
    );
  }

  override down(): void {
    this.addStatements(this.schema().dropTable('client_registrations'));
  }
}
