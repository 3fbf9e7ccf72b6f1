import { describe, expect, it } from 'vitest';
import { hasScope, Rbac, scopeMatches } from '../../api/identity/rbac.js';

describe('scopeMatches', () => {
  it.each([
    ['tool:github:use', 'tool:github:use', true],
    ['tool:github:use', 'tool:github:revoke', false],
    ['tool:*:use', 'tool:github:use', true],
    ['tool:*:use', 'tool:github:revoke', false],
    ['tool:data_*:use', 'tool:data_warehouse:use', true],
    ['tool:data_*:use', 'tool:database:use', false],
    ['tool:*', 'tool:github:use', false],
    ['*', 'credential:admin', true],
    ['tool:*:*', 'tool:github:revoke', true],
    ['tool:gh.*:use', 'tool:ghXcom:use', false],
    ['tool:a*b:use', 'tool:a:x:b:use', false],
  ])('%s grants %s: %s', (pattern, required, expected) => {
    expect(scopeMatches(pattern, required)).toBe(expected);
  });

  it('checks a list of grants', () => {
    expect(hasScope(['tool:slack:use', 'tool:git*:use'], 'tool:github:use')).toBe(true);
    expect(hasScope([], 'tool:github:use')).toBe(false);
  });
});

const roles = `
roles:
  reader: { description: read, scopes: ["tool:data_*:use"] }
  user: { description: all tools, inherits: [reader], scopes: ["tool:*:revoke"] }
  admin: { description: admin, inherits: [user], scopes: ["credential:admin"] }
`;

describe('Rbac', () => {
  it('resolves inheritance transitively and applies default roles', () => {
    const rbac = Rbac.fromYaml(roles, 'default_roles: [reader]\nusers: { alice: [admin], bob: [user] }');
    expect(rbac.scopesOf('alice').sort()).toEqual(['credential:admin', 'tool:*:revoke', 'tool:data_*:use']);
    expect(hasScope(rbac.scopesOf('bob'), 'credential:admin')).toBe(false);
    expect(hasScope(rbac.scopesOf('bob'), 'tool:data_lake:use')).toBe(true);
    expect(rbac.scopesOf('carol')).toEqual(['tool:data_*:use']);
  });

  it('refuses unknown roles, cycles and malformed scopes with the place named', () => {
    expect(() => Rbac.fromYaml(roles, 'users: { alice: [root] }')).toThrow(/alice has unknown role root/);
    expect(() => Rbac.fromYaml('roles: { a: { inherits: [b] }, b: { inherits: [a] } }', '{}')).toThrow(/cycle a -> b -> a/);
    expect(() => Rbac.fromYaml('roles: { a: { scopes: ["tool github"] } }', '{}')).toThrow(/roles: roles\.a\.scopes\.0/);
    expect(() => Rbac.fromYaml('roles: { a: { colour: red } }', '{}')).toThrow(/colour/);
  });

  it('treats user and role names that are Object.prototype properties as plain names', () => {
    const rbac = Rbac.fromYaml(roles, 'default_roles: [reader]\nusers: { alice: [admin] }');
    for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__']) {
      expect(rbac.scopesOf(name)).toEqual(['tool:data_*:use']);
    }
    expect(() => Rbac.fromYaml(roles, 'users: { alice: [constructor] }')).toThrow(/alice has unknown role constructor/);
    expect(() => Rbac.fromYaml('roles: { a: { inherits: [toString] } }', '{}')).toThrow(/inherits unknown role toString/);
  });
});
