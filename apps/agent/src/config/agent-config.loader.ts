import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { z } from 'zod';
import { agentConfigSchema, type AgentConfig } from './agent-config.schema';

/** A configuration problem; the message names the setting and is meant for the operator. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Reads and validates the agent's JSON configuration file, once, into a frozen object. */
export function loadAgentConfig(path: string): Readonly<AgentConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `cannot read the configuration file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      `the configuration file ${path} is not valid JSON: ${(error as Error).message}`,
    );
  }
  return parseAgentConfig(raw, dirname(resolve(path)), path);
}

/** Validates a configuration object; relative file paths are taken relative to `baseDir`. */
export function parseAgentConfig(
  raw: unknown,
  baseDir: string,
  source = 'the configuration',
): Readonly<AgentConfig> {
  const result = agentConfigSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    throw new ConfigError(
      `invalid configuration in ${source}:\n${formatIssues(result.error.issues)
        .map((l) => `  - ${l}`)
        .join('\n')}`,
    );
  }
  const config = result.data;
  const abs = (p: string) => resolve(baseDir, p);
  return deepFreeze({
    ...config,
    stateDir: abs(config.stateDir),
    qemu: {
      ...config.qemu,
      imageDir: config.qemu.imageDir && abs(config.qemu.imageDir),
      bootDir: config.qemu.bootDir && abs(config.qemu.bootDir),
    },
    etcd: {
      ...config.etcd,
      tls: config.etcd.tls && {
        ca: abs(config.etcd.tls.ca),
        cert: abs(config.etcd.tls.cert),
        key: abs(config.etcd.tls.key),
      },
      auth: config.etcd.auth && {
        username: config.etcd.auth.username,
        passwordFile: abs(config.etcd.auth.passwordFile),
      },
    },
    tls: {
      ...config.tls,
      issuer: config.tls.issuer && {
        cert: abs(config.tls.issuer.cert),
        key: abs(config.tls.issuer.key),
      },
      cert: abs(config.tls.cert),
      key: abs(config.tls.key),
      ca: abs(config.tls.ca),
      clientCas: config.tls.clientCas.map(abs),
    },
    audit: { file: config.audit.file === undefined ? undefined : abs(config.audit.file) },
    rbd: {
      ...config.rbd,
      conf: config.rbd.conf && abs(config.rbd.conf),
      keyring: config.rbd.keyring && abs(config.rbd.keyring),
    },
  });
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((issue) => {
    const at = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys')
      return issue.keys.map((key) => `${at ? `${at}.` : ''}${key}: unknown setting`);
    if (issue.code === 'invalid_type' && issue.input === undefined) return [`${at}: is required`];
    return [`${at || '(top level)'}: ${issue.message}`];
  });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
