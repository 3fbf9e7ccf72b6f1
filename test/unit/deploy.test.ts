import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, loadConfig } from '../../lib/config.js';
import { registry } from '../../lib/metrics.js';
import { parseTrustConfig } from '../../api/identity/trust.js';
import { Rbac } from '../../api/identity/rbac.js';

const K8S = 'deploy/kubernetes';
const manifests = readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(K8S, f), 'utf8')).map((d) => d.toJS() as Record<string, any>));
const byKind = (kind: string) => manifests.filter((m) => m.kind === kind);

/** Metric names an expression uses (histogram series resolve to their histogram). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\bbroker_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

describe('deploy/: what operators run', () => {
  const exported = new Set(registry.getMetricsAsArray().map((m) => m.name));

  it('alert rules and dashboard panels use only metrics the service exports', () => {
    const rules = (
      parseYaml(readFileSync('deploy/prometheus/alerts.yaml', 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }
    ).groups.flatMap((g) => g.rules);
    const dashboard = JSON.parse(readFileSync('deploy/grafana/credential-broker.json', 'utf8')) as {
      panels: { id: number; targets: { expr: string }[] }[];
    };
    const exprs = [...rules.map((r) => r.expr), ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr))];
    expect(exprs.length).toBeGreaterThan(15);
    const unknown = exprs.flatMap(metricsIn).filter((name) => !exported.has(name));
    expect(unknown).toEqual([]);
    expect(exprs.every((e) => metricsIn(e).length > 0)).toBe(true);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    // The alerts the operators asked for: refresh failures, provider health, denials, webhook deliveries.
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['CredentialRefreshesFailing', 'ProviderUnhealthy', 'AccessDenialsSpike', 'WebhookDeliveriesFailing']),
    );
  });

  it('the manifests set only configuration the service reads, and that configuration loads', () => {
    const config = byKind('ConfigMap').find((m) => m.metadata.name === 'credential-broker')!.data as Record<string, string>;
    const secret = byKind('Secret')[0]!.stringData as Record<string, string>;
    const unknown = Object.keys({ ...config, ...secret }).filter((k) => !CONFIG_VARIABLES.includes(k) && k !== 'WORKER_METRICS_PORT');
    expect(unknown).toEqual([]);
    expect(() => loadConfig({ ...config, ...secret })).not.toThrow();
  });

  it('ships identity files the service accepts (trust, roles, users)', () => {
    const files = byKind('ConfigMap').find((m) => m.metadata.name === 'credential-broker-files')!.data as Record<string, string>;
    expect(parseTrustConfig(parseYaml(files['trust.yaml']!), false).trusted_issuers).toHaveLength(1);
    const rbac = Rbac.fromYaml(files['roles.yaml']!, files['users.yaml']!);
    expect(rbac).toBeInstanceOf(Rbac);
  });

  it('runs the API, the worker and the migration from files that exist, with probes on /healthz and /readyz', () => {
    const containers = [...byKind('Deployment'), ...byKind('Job')].map((d) => d.spec.template.spec.containers[0]);
    for (const c of containers) expect(existsSync(c.command.at(-1)), c.name).toBe(true);
    const api = byKind('Deployment').find((d) => d.metadata.name.endsWith('-api'))!.spec.template.spec.containers[0];
    expect(api.readinessProbe.httpGet.path).toBe('/readyz');
    expect(api.livenessProbe.httpGet.path).toBe('/healthz');
    const worker = byKind('Deployment').find((d) => d.metadata.name.endsWith('-worker'))!.spec.template.spec.containers[0];
    expect(worker.ports[0].containerPort).toBe(9464);
    expect(byKind('PodDisruptionBudget')).toHaveLength(2);
  });
});
