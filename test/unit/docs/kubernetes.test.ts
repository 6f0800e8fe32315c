/**
 * config/kubernetes.yaml works as written: it parses, the Deployment has the properties docs/operations.md promises
 * (one replica, Recreate, probes, scrape annotations, resources, security context), the paths and ports agree with
 * each other, and the ConfigMap's watcher.yaml passes the daemon's own validation.
 */
import path from 'node:path';

import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

import { parseConfigText } from '../../../src/config/load.js';
import { applyEnvOverrides } from '../../../src/main.js';

import { readRepoFile } from './markdown.js';

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
      requests: { cpu: '50m', memory: '256Mi' },
      limits: { cpu: '500m', memory: '768Mi' },
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
