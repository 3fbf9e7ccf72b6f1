import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * Role-based access control, as in the seeds: roles with scopes and inheritance, users mapped to roles.
 * Scopes are colon-separated segments (`tool:github:use`); a pattern segment `*` matches one whole segment,
 * `*` inside a segment is a wildcard within it (`tool:data_*:use`), and a lone `*` matches everything.
 */
export class RbacError extends Error {
  readonly code = 'invalid_rbac_config';
}

const SCOPE = /^[A-Za-z0-9_.*@+=-]+(:[A-Za-z0-9_.*@+=-]+)*$/;
const scopeSchema = z.string().regex(SCOPE, 'must be colon-separated segments of letters, digits, _ . - * @ + =');

const rolesFileSchema = z
  .object({
    roles: z.record(
      z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
      z
        .object({
          description: z.string().default(''),
          scopes: z.array(scopeSchema).default([]),
          inherits: z.array(z.string()).default([]),
        })
        .strict(),
    ),
  })
  .strict();

const usersFileSchema = z
  .object({
    default_roles: z.array(z.string()).default([]),
    users: z.record(z.string(), z.array(z.string())).default({}),
  })
  .strict();

export type RolesFile = z.infer<typeof rolesFileSchema>;
export type UsersFile = z.infer<typeof usersFileSchema>;

export function scopeMatches(pattern: string, required: string): boolean {
  if (pattern === '*') return true;
  const p = pattern.split(':');
  const r = required.split(':');
  if (p.length !== r.length) return false;
  return p.every((seg, i) => segmentMatches(seg, r[i]!));
}

function segmentMatches(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  if (!pattern.includes('*')) return pattern === value;
  const regex = new RegExp(`^${pattern.split('*').map(escapeRegex).join('[^:]*')}$`);
  return regex.test(value);
}

function escapeRegex(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

export function hasScope(granted: readonly string[], required: string): boolean {
  return granted.some((g) => scopeMatches(g, required));
}

export class Rbac {
  private readonly roleScopes = new Map<string, string[]>();

  constructor(
    private readonly roles: RolesFile,
    private readonly users: UsersFile,
  ) {
    for (const name of Object.keys(roles.roles)) this.roleScopes.set(name, this.resolve(name, []));
    for (const [user, names] of Object.entries(users.users)) {
      for (const n of names) if (!Object.hasOwn(roles.roles, n)) throw new RbacError(`users: ${user} has unknown role ${n}`);
    }
    for (const n of users.default_roles) if (!Object.hasOwn(roles.roles, n)) throw new RbacError(`users: default role ${n} is not defined`);
  }

  static fromYaml(rolesYaml: string, usersYaml: string): Rbac {
    return new Rbac(parseFile(rolesFileSchema, rolesYaml, 'roles'), parseFile(usersFileSchema, usersYaml, 'users'));
  }

  static fromFiles(rolesPath: string, usersPath: string): Rbac {
    return Rbac.fromYaml(read(rolesPath), read(usersPath));
  }

  rolesOf(userId: string): string[] {
    // Own properties only: a user called `constructor` or `toString` is a user, not Object.prototype.
    return Object.hasOwn(this.users.users, userId) ? this.users.users[userId]! : this.users.default_roles;
  }

  scopesOf(userId: string): string[] {
    return [...new Set(this.rolesOf(userId).flatMap((r) => this.roleScopes.get(r) ?? []))];
  }

  private resolve(name: string, path: string[]): string[] {
    const role = Object.hasOwn(this.roles.roles, name) ? this.roles.roles[name] : undefined;
    if (!role) throw new RbacError(`roles: ${path.at(-1) ?? name} inherits unknown role ${name}`);
    if (path.includes(name)) throw new RbacError(`roles: inheritance cycle ${[...path, name].join(' -> ')}`);
    return [...role.scopes, ...role.inherits.flatMap((parent) => this.resolve(parent, [...path, name]))];
  }
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new RbacError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

function parseFile<T>(schema: z.ZodType<T>, text: string, label: string): T {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new RbacError(`${label}: not valid YAML: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(doc);
  if (!parsed.success) {
    throw new RbacError(`${label}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}
