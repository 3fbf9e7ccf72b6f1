import { loadConfig } from '../lib/config.js';
import { migrate, openOrm } from '../lib/db/orm.js';

/** `npm run migrate`: applies pending migrations (production runs this as a one-shot job). */
const config = loadConfig({ ...process.env, CREDENTIALS_ENCRYPTION_KEY: process.env.CREDENTIALS_ENCRYPTION_KEY ?? 'unused-by-migrations' });
const orm = await openOrm({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
const applied = await migrate(orm);
console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
await orm.close();
