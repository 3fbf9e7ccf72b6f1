import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AgentAuthError, AgentRegistry, DEFAULT_AGENT_SCOPES } from '../api/identity/agents.js';
import { databaseOptionsFromEnv, migrate, openOrm } from '../lib/db/orm.js';

const USAGE = `usage: npm run agents -- <command> [options]
  create <agentId> [--scopes a,b] [--description text]   register an agent and issue its first key
  issue-key <agentId> [--label text]                      issue another key (shown once)
  revoke-key <keyId>                                      revoke a key
  grant <agentId> --scopes a,b                            replace the agent's scopes
  set-jwks <agentId> (--jwks-url URL | --jwks-file F)     register public keys for signed assertions
  disable <agentId>                                       refuse every credential of the agent
  list                                                    list agents and their scopes
Default scopes: ${DEFAULT_AGENT_SCOPES.join(',')}`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    scopes: { type: 'string' },
    description: { type: 'string' },
    label: { type: 'string' },
    'jwks-url': { type: 'string' },
    'jwks-file': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
const [command, arg] = positionals;
if (values.help || !command) {
  console.log(USAGE);
  process.exit(command ? 0 : 2);
}

const orm = await openOrm(databaseOptionsFromEnv());
await migrate(orm);
const agents = new AgentRegistry(orm, { assertionAudience: '' });
const scopes = values.scopes
  ?.split(',')
  .map((s) => s.trim())
  .filter(Boolean);
try {
  switch (command) {
    case 'create': {
      await agents.create(need(arg, 'agentId'), {
        ...(scopes ? { scopes } : {}),
        ...(values.description ? { description: values.description } : {}),
      });
      const { keyId, key } = await agents.issueKey(arg!, values.label);
      console.log(`agent ${arg} created; key ${keyId} (shown once, store it now):\n${key}`);
      break;
    }
    case 'issue-key': {
      const { keyId, key } = await agents.issueKey(need(arg, 'agentId'), values.label);
      console.log(`key ${keyId} (shown once, store it now):\n${key}`);
      break;
    }
    case 'revoke-key':
      console.log((await agents.revokeKey(need(arg, 'keyId'))) ? 'revoked' : 'no such active key');
      break;
    case 'grant':
      await agents.setScopes(need(arg, 'agentId'), need(scopes, '--scopes'));
      console.log(`agent ${arg} scopes: ${scopes!.join(', ')}`);
      break;
    case 'set-jwks': {
      const jwksFile = values['jwks-file'];
      await agents.setPublicKeys(need(arg, 'agentId'), {
        ...(values['jwks-url'] ? { jwksUrl: values['jwks-url'] } : {}),
        ...(jwksFile ? { jwks: JSON.parse(readFileSync(jwksFile, 'utf8')) } : {}),
      });
      console.log(`agent ${arg} public keys registered`);
      break;
    }
    case 'disable':
      await agents.disable(need(arg, 'agentId'));
      console.log(`agent ${arg} disabled`);
      break;
    case 'list':
      for (const a of await agents.list()) {
        console.log(`${a.id}\t${a.disabledAt ? 'disabled' : 'active'}\t${a.scopes.join(',')}\t${a.jwksUrl ?? (a.jwks ? 'jwks' : '')}`);
      }
      break;
    default:
      console.error(USAGE);
      process.exitCode = 2;
  }
} catch (err) {
  if (!(err instanceof AgentAuthError)) throw err;
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
} finally {
  await orm.close();
}

function need<T>(value: T | undefined, name: string): T {
  if (value === undefined || value === '') {
    console.error(`missing ${name}\n${USAGE}`);
    process.exit(2);
  }
  return value;
}
