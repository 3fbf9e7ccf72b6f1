import { SchemaMigration } from './schema-migration.js';

/** Agents, their keys, used assertion ids, and the encrypted provider URL behind the start page. */
export class Migration20261126010000_agents extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().createTable('agents', (t) => {
        t.string('id', 200).primary();
        t.text('description');
        t.json('scopes').notNullable();
        t.text('jwks_url');
        t.json('jwks');
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.timestamp('disabled_at', { useTz: true });
      }),
    );
    this.addStatements(
      this.schema().createTable('agent_keys', (t) => {
        t.string('id', 32).primary();
        t.string('agent_id', 200).notNullable();
        t.string('secret_hash', 64).notNullable();
        t.string('label', 200);
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.timestamp('revoked_at', { useTz: true });
        t.index(['agent_id'], 'agent_keys_agent_idx');
      }),
    );
    this.addStatements(
      this.schema().createTable('used_assertions', (t) => {
        t.string('id', 64).primary();
        t.string('agent_id', 200).notNullable();
        t.timestamp('expires_at', { useTz: true }).notNullable();
        t.index(['expires_at'], 'used_assertions_expiry_idx');
      }),
    );
    this.addStatements(
      this.schema().alterTable('authorization_requests', (t) => {
        t.text('provider_url');
      }),
    );
  }

  override down(): void {
    this.addStatements(this.schema().alterTable('authorization_requests', (t) => t.dropColumn('provider_url')));
    this.addStatements(this.schema().dropTable('used_assertions'));
    this.addStatements(this.schema().dropTable('agent_keys'));
    this.addStatements(this.schema().dropTable('agents'));
  }
}
