import { authorizationActivities } from './authorization.js';
import { createToolkit, type ActivityDeps } from './context.js';
import { endingActivities } from './ending.js';
import { tokenActivities } from './tokens.js';
import { webhookActivities } from './webhooks.js';

export { STORE_BOUND_MS, type ActivityDeps, type BeginAuthorizationInput, type TokenMetadata } from './context.js';

/** Activities for the credential workflows. Each is idempotent: a retry after a crash does not redo the grant. */
export function createActivities(deps: ActivityDeps) {
  const kit = createToolkit(deps);
  return {
    ...authorizationActivities(deps, kit),
    ...tokenActivities(deps, kit),
    ...endingActivities(deps, kit),
    ...webhookActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
