import { describe, expect, it } from 'vitest';
import { credentialWorkflowId, isTerminal, OWNER_ID_PATTERN } from '../../lib/domain.js';

describe('credentialWorkflowId', () => {
  it('is readable and deterministic', () => {
    expect(credentialWorkflowId({ agentId: 'a1', userId: 'alice', toolId: 'github' })).toBe('credential:a1:alice:github');
  });

  it('percent-encodes parts so no two owners share an id', () => {
    const a = credentialWorkflowId({ agentId: 'a:b', userId: 'c', toolId: 't' });
    const b = credentialWorkflowId({ agentId: 'a', userId: 'b:c', toolId: 't' });
    expect(a).toBe('credential:a%3Ab:c:t');
    expect(a).not.toBe(b);
  });
});

describe('owner ids and phases', () => {
  it('accepts ordinary ids and refuses traversal, spaces and control characters', () => {
    for (const ok of ['alice', 'alice@example.com', 'agent-1.prod', 'u:123']) expect(OWNER_ID_PATTERN.test(ok)).toBe(true);
    for (const bad of ['../etc', '', ' alice', 'a b', 'a\nb', 'x'.repeat(201), 'é']) expect(OWNER_ID_PATTERN.test(bad)).toBe(false);
  });

  it('knows which phases end a credential', () => {
    expect(isTerminal('revoked')).toBe(true);
    expect(isTerminal('authorization_timed_out')).toBe(true);
    expect(isTerminal('active')).toBe(false);
    expect(isTerminal('refreshing')).toBe(false);
  });
});
