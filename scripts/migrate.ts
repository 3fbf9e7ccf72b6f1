import { databaseOptionsFromEnv, migrate, openOrm } from '../lib/db/orm.js';

/** `npm run migrate`: applies pending migrations (production runs this as a one-shot job). */
const orm = await openOrm(databaseOptionsFromEnv());
const applied = await migrate(orm);
console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
await orm.close();
