import { SchemaMigration } from './schema-migration.js';

/** Webhook subscriptions (secrets encrypted), the lifecycle events they receive, and each delivery's attempts. */
export class Migration20261128100000_webhooks extends SchemaMigration {
  override up(): void {
    this.addStatements(
      this.schema().createTable('webhook_subscriptions', (t) => {
        t.uuid('id').primary();
        t.string('agent_id', 200);
        t.text('url').notNullable();
        t.json('events').notNullable();
        t.string('description', 200);
        t.text('secret').notNullable();
        t.string('created_by', 200).notNullable();
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.timestamp('deleted_at', { useTz: true });
        t.index(['agent_id'], 'webhook_subscriptions_agent_index');
      }),
    );
    this.addStatements(
      this.schema().createTable('webhook_events', (t) => {
        t.uuid('id').primary();
        t.string('type', 80).notNullable();
        t.string('agent_id', 200).notNullable();
        t.string('user_id', 200).notNullable();
        t.string('tool_id', 200).notNullable();
        t.uuid('credential_id').notNullable();
        t.text('payload').notNullable();
        t.timestamp('at', { useTz: true }).notNullable();
      }),
    );
    this.addStatements(
      this.schema().createTable('webhook_deliveries', (t) => {
        t.uuid('id').primary();
        t.uuid('event_id').notNullable();
        t.uuid('subscription_id').notNullable();
        t.string('status', 20).notNullable();
        t.integer('attempts').notNullable().defaultTo(0);
        t.integer('last_status_code');
        t.string('last_error', 200);
        t.timestamp('last_attempt_at', { useTz: true });
        t.timestamp('delivered_at', { useTz: true });
        t.timestamp('created_at', { useTz: true }).notNullable();
        t.unique(['event_id', 'subscription_id'], { indexName: 'webhook_deliveries_event_subscription_unique' });
        t.index(['subscription_id', 'created_at'], 'webhook_deliveries_subscription_created_index');
      }),
    );
  }

  override down(): void {
    this.addStatements(this.schema().dropTable('webhook_deliveries'));
    this.addStatements(this.schema().dropTable('webhook_events'));
    this.addStatements(this.schema().dropTable('webhook_subscriptions'));
  }
}
