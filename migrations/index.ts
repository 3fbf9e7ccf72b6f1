import { Migration20261126000000_initial } from './Migration20261126000000_initial.js';
import { Migration20261126010000_agents } from './Migration20261126010000_agents.js';
import { Migration20261126020000_client_registrations } from './Migration20261126020000_client_registrations.js';
import { Migration20261128000000_credential_issuer } from './Migration20261128000000_credential_issuer.js';
import { Migration20261128100000_webhooks } from './Migration20261128100000_webhooks.js';
import { Migration20261128110000_refresh_expiry } from './Migration20261128110000_refresh_expiry.js';
import { Migration20261128120000_credential_account } from './Migration20261128120000_credential_account.js';
import { Migration20261128130000_presented_identities } from './Migration20261128130000_presented_identities.js';
import { Migration20261128140000_dpop_and_identity_time } from './Migration20261128140000_dpop_and_identity_time.js';

/** Listed explicitly so migrations run the same from TypeScript sources and from any bundle. */
export const migrationsList = [
  { name: 'Migration20261126000000_initial', class: Migration20261126000000_initial },
  { name: 'Migration20261126010000_agents', class: Migration20261126010000_agents },
  { name: 'Migration20261126020000_client_registrations', class: Migration20261126020000_client_registrations },
  { name: 'Migration20261128000000_credential_issuer', class: Migration20261128000000_credential_issuer },
  { name: 'Migration20261128100000_webhooks', class: Migration20261128100000_webhooks },
  { name: 'Migration20261128110000_refresh_expiry', class: Migration20261128110000_refresh_expiry },
  { name: 'Migration20261128120000_credential_account', class: Migration20261128120000_credential_account },
  { name: 'Migration20261128130000_presented_identities', class: Migration20261128130000_presented_identities },
  { name: 'Migration20261128140000_dpop_and_identity_time', class: Migration20261128140000_dpop_and_identity_time },
];
