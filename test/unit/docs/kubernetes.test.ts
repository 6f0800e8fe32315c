/**
 * The Kubernetes manifests work as written.
 *
 * - config/kubernetes.yaml (one replica, file ledger): it parses, the Deployment has the properties
 *   docs/operations.md promises (one replica, Recreate, probes, scrape annotations, resources, security
 *   context), the paths and ports agree with each other, and the ConfigMap's watcher.yaml passes the daemon's
 *   own validation.
 * - Every config/kubernetes*.yaml, checked against the code rather than against numbers written here: the
 *   port is the default of `http.listen` and what the ConfigMap's watcher.yaml compiles to (with the env
 *   overrides); the probe and scrape paths answer as a real ops server answers them; every environment
 *   variable is one the code reads; every `*_FILE` and config path into a secret names a key of a Secret that
 *   is mounted there; writable paths sit on writable mounts.
 * - config/kubernetes-replicas.yaml (PostgreSQL): 2+ replicas, RollingUpdate, a PodDisruptionBudget, the
 *   database URL from a Secret, no volume for state.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

import { CREDENTIAL_ENV_VARS } from '../../../src/alibaba/credentials.js';
import { resolveConfigPath, resolveLogSettings } from '../../../src/config/env.js';
import { parseConfigText } from '../../../src/config/load.js';
import { RAW_DEFAULTS } from '../../../src/config/schema.js';
import type { CompiledConfig } from '../../../src/config/types.js';
import { ConfigError } from '../../../src/errors.js';
import { applyEnvOverrides } from '../../../src/main.js';
import type { OpsServer } from '../../../src/ops/http-server.js';
import { startOpsServer } from '../../../src/ops/http-server.js';
import { createMetrics } from '../../../src/ops/metrics.js';
import { createCaptureLogger } from '../ops/capture-logger.js';

import { ROOT, readRepoFile } from './markdown.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes objects are checked field by field below */
const text = readRepoFile('config/kubernetes.yaml');
const documents = parseAllDocuments(text);
const objects: any[] = Array.isArray(documents) ? documents.map((d) => d.toJS()) : [];
const byKind = (kind: string): any => {
  const found = objects.filter((o) => o?.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0];
};

describe('config/kubernetes.yaml', () => {
  it('parses without errors or warnings into the four objects, none with a namespace', () => {
    expect(Array.isArray(documents)).toBe(true);
    if (!Array.isArray(documents)) return;
    for (const d of documents) {
      expect(d.errors).toEqual([]);
      expect(d.warnings).toEqual([]);
    }
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'Secret']);
    for (const o of objects) {
      expect(o.apiVersion).toMatch(/^(v1|apps\/v1)$/);
      expect(o.metadata.name).toMatch(/^iot-batch-watcher/);
      expect(o.metadata.namespace).toBeUndefined();
    }
  });

  const deployment = byKind('Deployment');
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env = new Map<string, string>(container.env.filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]));
  const mountOf = (volume: string): any => container.volumeMounts.find((m: any) => m.name === volume);
  const volumeOf = (name: string): any => pod.volumes.find((v: any) => v.name === name);

  it('runs one replica with the Recreate strategy, and a selector that matches its pods', () => {
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
    expect(deployment.spec.template.metadata.labels).toMatchObject(deployment.spec.selector.matchLabels);
    expect(pod.containers).toHaveLength(1);
  });

  it('has liveness /healthz and readiness /readyz probes on 9464', () => {
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 9464 });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 9464 });
    expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 9464 });
    expect(container.ports).toContainEqual(expect.objectContaining({ containerPort: 9464 }));
  });

  it('carries the Prometheus scrape annotations', () => {
    expect(deployment.spec.template.metadata.annotations).toEqual({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '9464',
      'prometheus.io/path': '/metrics',
    });
  });

  it('sets the documented requests and limits', () => {
    expect(container.resources).toEqual({
      requests: { cpu: '50m', memory: '512Mi' },
      limits: { cpu: '500m', memory: '1Gi' },
    });
  });

  it('runs non-root with a read-only root filesystem, no privilege escalation, no capabilities', () => {
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      fsGroup: 1000,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.securityContext).toEqual({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it('gives more grace than the daemon needs on SIGTERM (5 s in flight + 3 s sink flush)', () => {
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(5 + 3);
  });

  it('uses the placeholder image', () => {
    expect(container.image).toBe('iot-batch-watcher:latest');
    expect(text).toMatch(/Placeholder: build the image/);
  });

  it('passes the AccessKey only as *_FILE paths to keys of the Secret', () => {
    const secret = byKind('Secret');
    const mount = mountOf('credentials');
    expect(mount.readOnly).toBe(true);
    expect(volumeOf('credentials').secret.secretName).toBe(secret.metadata.name);
    expect(volumeOf('credentials').secret.defaultMode).toBe(0o440);
    for (const name of ['ALIBABA_CLOUD_ACCESS_KEY_ID_FILE', 'ALIBABA_CLOUD_ACCESS_KEY_SECRET_FILE']) {
      const file = env.get(name);
      expect(file, name).toBeDefined();
      expect(path.posix.dirname(file!)).toBe(mount.mountPath);
      expect(Object.keys(secret.stringData)).toContain(path.posix.basename(file!));
    }
    expect(env.has('ALIBABA_CLOUD_ACCESS_KEY_ID')).toBe(false);
    expect(env.has('ALIBABA_CLOUD_ACCESS_KEY_SECRET')).toBe(false);
  });

  it("mounts the ConfigMap as a directory where IBW_CONFIG points, and the claim where the ledger lives", () => {
    const configMap = byKind('ConfigMap');
    const claim = byKind('PersistentVolumeClaim');
    const configFile = env.get('IBW_CONFIG')!;
    const configMount = mountOf('config');
    expect(configMount.subPath).toBeUndefined(); // subPath mounts never see ConfigMap updates
    expect(configMount.mountPath).toBe(path.posix.dirname(configFile));
    expect(volumeOf('config').configMap.name).toBe(configMap.metadata.name);
    expect(Object.keys(configMap.data)).toEqual([path.posix.basename(configFile)]);
    expect(volumeOf('data').persistentVolumeClaim.claimName).toBe(claim.metadata.name);
    expect(mountOf('data').mountPath).toBe('/var/lib/iot-batch-watcher');
    expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);
  });

  it("holds a watcher.yaml that the daemon accepts, with the state, results and listen address of the pod", () => {
    const configMap = byKind('ConfigMap');
    const configFile = env.get('IBW_CONFIG')!;
    const config = applyEnvOverrides(parseConfigText(configMap.data['watcher.yaml'], configFile, { cwd: '/app' }), Object.fromEntries(env));
    expect(config.state.dir).toBe('/var/lib/iot-batch-watcher/state');
    expect(config.output.resultsDir).toBe('/var/lib/iot-batch-watcher/results');
    expect(config.output.eventsFile?.startsWith('/var/lib/iot-batch-watcher/')).toBe(true);
    expect(config.http.listen).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(config.alibaba.credentials).toBe('env');
    // and without the env override too
    const fileOnly = parseConfigText(configMap.data['watcher.yaml'], configFile, { cwd: '/app' });
    expect(fileOnly.http.listen).toEqual({ host: '0.0.0.0', port: 9464 });
  });
});

// ---- every manifest, against the code ----

const MANIFESTS = readdirSync(path.join(ROOT, 'config'))
  .filter((f) => /^kubernetes.*\.ya?ml$/.test(f))
  .sort()
  .map((f) => `config/${f}`);

/** The port of `http.listen`'s default: what the daemon and the image listen on. */
const DEFAULT_PORT = Number(RAW_DEFAULTS.http.listen.split(':').pop());

interface Manifest {
  file: string;
  objects: any[];
  deployment: any;
  pod: any;
  container: any;
  env: Map<string, string>;
  config: CompiledConfig;
}

function loadManifest(file: string): Manifest {
  const docs = parseAllDocuments(readRepoFile(file));
  if (!Array.isArray(docs)) throw new Error(`${file}: no documents`);
  for (const d of docs) {
    expect(d.errors, file).toEqual([]);
    expect(d.warnings, file).toEqual([]);
  }
  const objects: any[] = docs.map((d) => d.toJS()).filter((o) => o !== null);
  const deployments = objects.filter((o) => o.kind === 'Deployment');
  expect(deployments, `${file}: one Deployment`).toHaveLength(1);
  const deployment = deployments[0];
  const pod = deployment.spec.template.spec;
  expect(pod.containers, file).toHaveLength(1);
  const container = pod.containers[0];
  const env = new Map<string, string>((container.env ?? []).filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]));
  const configPath = resolveConfigPath(undefined, Object.fromEntries(env));
  const configMount = container.volumeMounts.find((m: any) => m.mountPath === path.posix.dirname(configPath));
  expect(configMount, `${file}: a mount at the directory of IBW_CONFIG`).toBeDefined();
  const configVolume = pod.volumes.find((v: any) => v.name === configMount.name);
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === configVolume.configMap?.name);
  expect(configMap, `${file}: the ConfigMap mounted at IBW_CONFIG`).toBeDefined();
  const text: string = configMap.data[path.posix.basename(configPath)];
  const config = applyEnvOverrides(parseConfigText(text, configPath, { cwd: '/app' }), Object.fromEntries(env));
  return { file, objects, deployment, pod, container, env, config };
}

describe('the environment variables the manifests may set are read by the code', () => {
  it('IBW_CONFIG chooses the file, IBW_HTTP_LISTEN the listen address, LOG_LEVEL and LOG_FORMAT the logging', () => {
    expect(resolveConfigPath(undefined, { IBW_CONFIG: '/x/w.yaml' })).toBe('/x/w.yaml');
    const base = parseConfigText('alibaba: { regionId: cn-shanghai }\n', '/x/w.yaml', { cwd: '/app' });
    expect(applyEnvOverrides(base, { IBW_HTTP_LISTEN: '0.0.0.0:1234' }).http.listen).toEqual({ host: '0.0.0.0', port: 1234 });
    expect(resolveLogSettings({ LOG_LEVEL: 'warn', LOG_FORMAT: 'pretty' })).toMatchObject({ level: 'warn', format: 'pretty' });
    expect(() => resolveLogSettings({ LOG_LEVEL: 'loud' })).toThrow(ConfigError);
  });
});

/** Names the code reads, for a manifest whose config compiled to `config`. */
function namesTheCodeReads(config: CompiledConfig): Set<string> {
  const credentials = Object.values(CREDENTIAL_ENV_VARS).flatMap((n) => [n, `${n}_FILE`]);
  const urlEnv = config.state.postgres?.urlEnv;
  return new Set([
    'IBW_CONFIG', // each of these four is shown to be read in the test above
    'IBW_HTTP_LISTEN',
    'LOG_LEVEL',
    'LOG_FORMAT',
    ...credentials,
    ...(config.state.backend === 'postgres' && urlEnv ? [urlEnv, `${urlEnv}_FILE`] : []),
    ...(config.output.webhook ? [config.output.webhook.secretEnv] : []),
  ]);
}

describe.each(MANIFESTS)('%s against the code', (file) => {
  const m = loadManifest(file);
  const { container, pod, env, config, objects } = m;
  const secrets = objects.filter((o) => o.kind === 'Secret');
  const mountFor = (p: string): any =>
    container.volumeMounts
      .filter((mt: any) => p === mt.mountPath || p.startsWith(`${mt.mountPath}/`))
      .sort((a: any, b: any) => b.mountPath.length - a.mountPath.length)[0];
  const volumeOf = (name: string): any => pod.volumes.find((v: any) => v.name === name);

  /** A path into a mounted Secret: the mount is read-only and the file is a key of a Secret in this manifest. */
  function expectSecretFile(what: string, p: string): void {
    const mount = mountFor(p);
    expect(mount, `${what}: ${p} is on a mount`).toBeDefined();
    expect(mount.readOnly, what).toBe(true);
    const volume = volumeOf(mount.name);
    expect(volume.secret, `${what}: ${p} is on a secret volume`).toBeDefined();
    const secret = secrets.find((s) => s.metadata.name === volume.secret.secretName);
    expect(secret, `${what}: the Secret ${volume.secret.secretName} is in ${file}`).toBeDefined();
    expect(Object.keys(secret.stringData ?? secret.data ?? {}), what).toContain(path.posix.relative(mount.mountPath, p));
  }

  it('listens on the default port of http.listen, and exposes, probes and scrapes that port', () => {
    expect(config.http.listen?.port).toBe(DEFAULT_PORT);
    expect(config.http.listen?.host).toBe('0.0.0.0');
    expect(container.ports).toContainEqual(expect.objectContaining({ containerPort: DEFAULT_PORT, protocol: 'TCP' }));
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      expect(container[probe]?.httpGet?.port, `${probe} port`).toBe(DEFAULT_PORT);
    }
    expect(m.deployment.spec.template.metadata.annotations['prometheus.io/port']).toBe(String(DEFAULT_PORT));
  });

  describe('probe and scrape paths, asked of a real ops server', () => {
    let server: OpsServer;
    let ready = false;
    beforeAll(async () => {
      server = await startOpsServer({
        host: '127.0.0.1',
        port: 0,
        metrics: createMetrics({ collectDefault: false }),
        isReady: () => ready,
        listBatches: () => [],
        logger: createCaptureLogger().logger,
      });
    });
    afterAll(() => server.close());

    it('liveness and startup answer 200 before readiness; readiness is 503 until ready, then 200; metrics 200', async () => {
      const get = async (p: string): Promise<number> => (await fetch(`${server.url}${p}`)).status;
      ready = false;
      expect(await get(container.livenessProbe.httpGet.path)).toBe(200);
      expect(await get(container.startupProbe.httpGet.path)).toBe(200);
      expect(await get(container.readinessProbe.httpGet.path)).toBe(503);
      ready = true;
      expect(await get(container.readinessProbe.httpGet.path)).toBe(200);
      const metricsPath = m.deployment.spec.template.metadata.annotations['prometheus.io/path'];
      const res = await fetch(`${server.url}${metricsPath}`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^# HELP ibw_/m);
    });
  });

  it('sets only environment variables the code reads', () => {
    const known = namesTheCodeReads(config);
    for (const e of container.env ?? []) expect(known, `${file}: env ${e.name}`).toContain(e.name);
  });

  it('points every *_FILE variable and every secret path of the config at a key of a mounted Secret', () => {
    const fileVars = [...env.entries()].filter(([name]) => name.endsWith('_FILE'));
    expect(fileVars.length).toBeGreaterThan(0);
    for (const [name, value] of fileVars) expectSecretFile(`${file}: ${name}`, value);
    const caFile = config.state.postgres?.ssl?.caFile;
    if (config.state.backend === 'postgres' && caFile !== undefined) expectSecretFile(`${file}: state.postgres.ssl.caFile`, caFile);
    for (const e of container.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref === undefined) continue;
      const secret = secrets.find((s) => s.metadata.name === ref.name);
      expect(Object.keys(secret?.stringData ?? secret?.data ?? {}), `${file}: env ${e.name}`).toContain(ref.key);
    }
    // Secrets are never inlined as plain values.
    for (const name of [...Object.values(CREDENTIAL_ENV_VARS), config.state.postgres?.urlEnv ?? 'IBW_DATABASE_URL']) {
      expect(env.has(name), `${file}: ${name} as a plain value`).toBe(false);
    }
  });

  it('puts every path the daemon writes on a writable mount (the root filesystem is read-only)', () => {
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    const written = [config.output.resultsDir, ...(config.output.eventsFile ? [config.output.eventsFile] : [])];
    if ((config.state.backend ?? 'file') === 'file') written.push(config.state.dir);
    for (const p of written) {
      const mount = mountFor(p);
      expect(mount, `${file}: ${p} is on a mount`).toBeDefined();
      expect(mount.readOnly ?? false, `${file}: ${p}`).toBe(false);
      const volume = volumeOf(mount.name);
      expect(volume.emptyDir ?? volume.persistentVolumeClaim, `${file}: ${p} on an emptyDir or a claim`).toBeDefined();
    }
  });

  it('selects its own pods, and every object is labelled and namespace-free', () => {
    expect(m.deployment.spec.template.metadata.labels).toMatchObject(m.deployment.spec.selector.matchLabels);
    for (const o of objects) {
      expect(o.metadata.labels?.['app.kubernetes.io/name'], `${file}: ${o.kind} ${o.metadata.name}`).toBe('iot-batch-watcher');
      expect(o.metadata.namespace).toBeUndefined();
    }
  });
});

describe('config/kubernetes-replicas.yaml', () => {
  const m = loadManifest('config/kubernetes-replicas.yaml');
  const { deployment, pod, config, objects } = m;

  it('runs 2+ replicas of the PostgreSQL backend with a rolling update that keeps one ready', () => {
    expect(config.state.backend).toBe('postgres');
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(deployment.spec.strategy.type).toBe('RollingUpdate');
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    expect(config.state.postgres?.ssl?.mode).toBe('verify-full');
  });

  it('has a PodDisruptionBudget for its pods that leaves at least one running', () => {
    const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget');
    expect(pdbs).toHaveLength(1);
    const pdb = pdbs[0];
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(deployment.spec.template.metadata.labels).toMatchObject(pdb.spec.selector.matchLabels);
    expect(pdb.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
  });

  it('reads the database URL from a Secret file named after state.postgres.urlEnv, and has no volume for state', () => {
    const urlEnv = config.state.postgres!.urlEnv;
    expect(m.env.get(`${urlEnv}_FILE`)).toBeDefined();
    expect(objects.filter((o) => o.kind === 'PersistentVolumeClaim')).toEqual([]);
    expect(pod.volumes.filter((v: any) => v.persistentVolumeClaim !== undefined)).toEqual([]);
    const kinds = objects.map((o) => o.kind).sort();
    expect(kinds).toEqual(['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Secret', 'Secret']);
  });
});
