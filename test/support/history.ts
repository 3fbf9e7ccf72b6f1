import type { Payload, PayloadCodec } from '@temporalio/common';
import type { Client } from '@temporalio/client';

/**
 * Every byte of a history as text, with each payload also decrypted by the payload codec: the check is
 * that secrets are not in payloads at all, not merely that the codec hides them.
 */
export async function haystack(codec: PayloadCodec, value: unknown, out: string[] = []): Promise<string[]> {
  if (value instanceof Uint8Array) {
    out.push(Buffer.from(value).toString('utf8'), Buffer.from(value).toString('base64'));
  } else if (Array.isArray(value)) {
    for (const v of value) await haystack(codec, v, out);
  } else if (value && typeof value === 'object') {
    if ('data' in value && 'metadata' in value && (value as { data: unknown }).data instanceof Uint8Array) {
      const [decoded] = await codec.decode([value as Payload]);
      out.push(Buffer.from(decoded!.data ?? new Uint8Array()).toString('utf8'));
    }
    for (const v of Object.values(value)) await haystack(codec, v, out);
  } else if (value !== null && value !== undefined) {
    out.push(String(value));
  }
  return out;
}

/** Every run's history of a workflow id, decoded as `haystack` does, one text per run. */
export async function historiesOf(client: Client, codec: PayloadCodec, workflowId: string): Promise<string[]> {
  const texts: string[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    texts.push((await haystack(codec, history)).join('\n'));
  }
  return texts;
}
