import { ERROR_CATALOG } from '../api/error-catalog.js';

/** Prints the README's error code table from the catalog (`npx tsx scripts/error-table.ts`). */
console.log('| Code | Status | When |\n| --- | --- | --- |');
for (const [code, e] of Object.entries(ERROR_CATALOG)) console.log(`| \`${code}\` | ${e.status} | ${e.when} |`);
