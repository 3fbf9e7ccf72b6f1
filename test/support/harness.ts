import { inject } from 'vitest';
import { startStack, type Harness, type HarnessOptions } from './stack.js';

export { freshOwner, type CallerSpec, type Harness, type HarnessOptions } from './stack.js';

/** The real service in-process on the test run's Temporal server, bundle and database. */
export function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  return startStack(
    { temporalAddress: inject('temporalAddress'), workflowBundlePath: inject('workflowBundlePath'), databaseUrl: inject('databaseUrl') },
    opts,
  );
}
