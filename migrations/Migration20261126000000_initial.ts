import { SchemaMigration } from './schema-migration.js';

export class Migration20261126000000_initial extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().createTable('credentials', (t) => {
        t.uuid('id').primary();
        t.string('agent_id', 200).notNullable();
        t.string('user_id', 200).notNullable();
        t.string('tool_id', 200).notNullable();
        t.string('workflow_id', 700).notNullable();
        t.string('status', 40).notNullable();
        t.text('access_token');
        t.text('refresh_token');
        t.string('token_type', 40);
        t.text('scope');
        t.timestamp('access_expires_at', { useTz: true });
        t.timestamp('acquired_at', { useTz: true });
        t.timestamp('ttl_expires_at', { useTz: true });
        t.integer('token_generation').notNullable().defaultTo(0);
        t.timestamp('last_refreshed_at', { useTz: true });
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.timestamp('updated_at', { useTz: true }).notNullable();
        t.timestamp('deleted_at', { useTz: true });
        t.string('end_reason', 80);
        t.index(['agent_id', 'user_id', 'tool_id', 'created_at'], 'credentials_owner_idx');
      }),
    );
    this.addStatements(
      this.schema().createTable('authorization_requests', (t) => {
        t.uuid('id').primary();
        t.uuid('credential_id').notNullable();
        t.string('workflow_id', 700).notNullable();
        t.string('agent_id', 200).notNullable();
        t.string('user_id', 200).notNullable();
        t.string('tool_id', 200).notNullable();
        t.string('state_hash', 64).notNullable().unique();
        t.text('code_verifier');
        t.text('redirect_uri').notNullable();
        t.timestamp('expires_at', { useTz: true }).notNullable();
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.timestamp('consumed_at', { useTz: true });
        t.text('callback_params');
        t.index(['credential_id'], 'authorization_requests_credential_idx');
      }),
    );
    this.addStatements(
      this.schema().createTable('audit_events', (t) => {
        t.uuid('id').primary();
        t.timestamp('at', { useTz: true }).notNullable();
        t.string('event_type', 80).notNullable();
        t.string('outcome', 40).notNullable();
        t.string('actor', 200).notNullable();
        t.string('agent_id', 200);
        t.string('user_id', 200);
        t.string('tool_id', 200);
        t.uuid('credential_id');
        t.string('request_id', 100);
        t.string('ip', 100);
        t.json('detail');
        t.index(['at'], 'audit_events_at_idx');
        t.index(['agent_id', 'user_id', 'tool_id'], 'audit_events_owner_idx');
      }),
    );
  }

  override down(): void {
    this.addStatements(this.schema().dropTable('audit_events'));
    this.addStatements(this.schema().dropTable('authorization_requests'));
    this.addStatements(this.schema().dropTable('credentials'));
  }
}
