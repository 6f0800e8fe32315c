/**
 * The environment as configuration: overrides that win over the file (`IBW_HTTP_LISTEN`), parsed by the schema's
 * own parsers so a value the file refuses is refused here too (issue #12), and the checks `validate` runs so that
 * it fails whenever `run` would fail for an environment reason (issue #13.6): credentials, the webhook secret,
 * logging and override variables.
 *
 * Messages name variables and paths, never a value of a secret.
 */

import { CREDENTIAL_ENV_VARS, createEnvCredentials } from '../alibaba/credentials.js';
import { ConfigError, DaemonError } from '../errors.js';
import type { ConfigIssue } from '../errors.js';
import { readEnvSecret } from '../secret-env.js';
import { expectedGot } from './describe.js';
import { resolveLogSettings } from './env.js';
import { maxConfigBytes } from './read-file.js';
import { LISTEN_EXPECTED, parseListen } from './schema.js';
import type { AccountConfig, CompiledConfig } from './types.js';

type Env = Readonly<Record<string, string | undefined>>;

function envIssue(variable: string, message: string): ConfigIssue {
  return { file: 'env', line: 0, col: 0, path: variable, message };
}

/**
 * `IBW_HTTP_LISTEN` (`host:port` or `off`) wins over `http.listen`; the container image sets it to
 * `0.0.0.0:9464` so probes and Prometheus reach the pod. The value follows exactly the rule of `http.listen`.
 *
 * @throws ConfigError (file `env`, path `IBW_HTTP_LISTEN`) for a value `http.listen` would refuse.
 */
export function applyEnvOverrides(config: CompiledConfig, env: Env): CompiledConfig {
  const raw = env.IBW_HTTP_LISTEN;
  const listen = raw?.trim();
  if (listen === undefined || listen === '') return config;
  if (listen === 'off') return { ...config, http: { ...config.http, listen: null } };
  const parsed = parseListen(listen);
  if (parsed === null) throw new ConfigError([envIssue('IBW_HTTP_LISTEN', expectedGot(LISTEN_EXPECTED, raw))]);
  return { ...config, http: { ...config.http, listen: parsed } };
}

function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn();
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
}

/**
 * The credential problems of one account of `accounts` (DESIGN.md §11): missing variables, both `NAME` and
 * `NAME_FILE`, an unreadable file. Each issue points at the account's entry (file:line:col when known) and names it.
 */
export function accountCredentialIssues(account: AccountConfig, index: number, env: Env): ConfigIssue[] {
  const c = account.credentials;
  if (c.mode !== 'env') return [];
  const at = account.source;
  const path = `accounts[${index}].credentials`;
  try {
    createEnvCredentials(env, {
      names: { accessKeyId: c.accessKeyIdEnv, accessKeySecret: c.accessKeySecretEnv, securityToken: c.securityTokenEnv },
      account: account.name,
    });
    return [];
  } catch (err) {
    if (!(err instanceof DaemonError)) throw err;
    const message = err.message.includes(`"${account.name}"`) ? err.message : `account "${account.name}": ${err.message}`;
    return [{ file: at?.file ?? 'env', line: at?.line ?? 0, col: at?.col ?? 0, path, message }];
  }
}

/**
 * Everything about the environment that would stop `run` with this configuration: bad `LOG_LEVEL`,
 * `LOG_FORMAT`, `IBW_HTTP_LISTEN` or `IBW_CONFIG_MAX_BYTES`; missing or unreadable credentials (with
 * `alibaba.credentials: env`); a webhook without its secret, or an unreadable secret file.
 *
 * @returns one issue per problem (file `env`, line 0, col 0, path = the variable); empty when `run` would start.
 */
export function checkEnvironment(config: CompiledConfig, env: Env): ConfigIssue[] {
  const issues: ConfigIssue[] = [
    ...issuesOf(() => resolveLogSettings(env)),
    ...issuesOf(() => applyEnvOverrides(config, env)),
    ...issuesOf(() => maxConfigBytes(env)),
  ];
  if (config.output.resultsLayout !== 'account') {
    // One account, `default` (a file without `accounts`): exactly the check of before accounts existed.
    if (config.alibaba.credentials === 'env') {
      try {
        createEnvCredentials(env);
      } catch (err) {
        if (!(err instanceof DaemonError)) throw err;
        issues.push(envIssue(CREDENTIAL_ENV_VARS.accessKeyId.replace(/_ID$/, '_*'), err.message));
      }
    }
  } else {
    for (const [index, account] of config.accounts.entries()) issues.push(...accountCredentialIssues(account, index, env));
  }
  const webhook = config.output.webhook;
  if (webhook !== null) {
    const name = webhook.secretEnv;
    try {
      if (readEnvSecret(env, name) === undefined) {
        issues.push(envIssue(name, `output.webhook is set but neither ${name} nor ${name}_FILE (output.webhook.secretEnv) holds a secret`));
      }
    } catch (err) {
      if (!(err instanceof DaemonError)) throw err;
      issues.push(envIssue(name, err.message));
    }
  }
  return issues;
}
