import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';

/** The baseline round trip: a signal wakes the workflow, it runs one activity, it completes. */
export const go = defineSignal('go');
const { noop } = proxyActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '10s' });

export async function signalThenActivity(): Promise<void> {
  let signalled = false;
  setHandler(go, () => {
    signalled = true;
  });
  await condition(() => signalled);
  await noop();
}
