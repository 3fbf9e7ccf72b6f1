import { Migration } from '@mikro-orm/migrations';

/** Migrations written with the knex schema builder, so one migration serves PostgreSQL and SQLite. */
export abstract class SchemaMigration extends Migration {
  /** A fresh builder each time: a knex schema builder accumulates every statement made on it. */
  protected schema() {
    return this.getKnex().schema;
  }

  /** One builder may stand for several statements (SQLite creates indexes separately). */
  protected addStatements(builder: { toSQL(): unknown }): void {
    const statements = builder.toSQL() as { sql: string }[] | { sql: string };
    for (const s of Array.isArray(statements) ? statements : [statements]) this.addSql(s.sql);
  }
}
