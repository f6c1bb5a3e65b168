// The manifest's rules beyond its shape, in the order berth-protocol checks them (services in
// name order, as Rust's BTreeMap iterates), and what a manifest reserves.

import type { Manifest, Service, Totals, Volume } from "./manifest";
import {
  MAX_ALLOWED, MAX_DOMAINS, MAX_IDLE_TIMEOUT_S, MAX_REPLICAS, MAX_SERVICES, MAX_VOLUME_BYTES,
  MIN_IDLE_TIMEOUT_S, VERSION,
} from "./manifest";
import { fieldError as field } from "./manifest-error";
import { bytes, cpuMillis, gibCeil, mibCeil, seconds } from "./quantity";

const MAX_HOSTNAME = 253;
const MAX_LABEL = 63;

/** Rust's byte order of ASCII keys (BTreeMap). */
const sorted = <T>(o: Record<string, T>): [string, T][] =>
  Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

export function validate(m: Manifest): void {
  if (m.version !== VERSION) {
    throw field("version", `version ${m.version} is not supported (this keeper reads ${VERSION})`);
  }
  const services = sorted(m.services);
  if (services.length === 0) throw field("services", "at least one service is required");
  if (services.length > MAX_SERVICES) throw field("services", `at most ${MAX_SERVICES} services`);
  for (const [name, s] of services) {
    const at = `services.${name}`;
    if (!isDnsLabel(name, 20)) {
      throw field(at, "a service name is 1-20 characters of a-z, 0-9 and '-', starting with a letter");
    }
    validateService(s, at);
  }
  if (m.secrets !== undefined) {
    throw field("secrets", "a manifest with secrets is sealed on your machine: deploy it with `berth deploy --secret`");
  }
  for (const [name, s] of services) {
    const at = `services.${name}`;
    for (const [v] of sorted(s.secret_env)) {
      const path = `${at}.secret_env.${v}`;
      if (!isEnvName(v)) throw field(path, "not a valid variable name");
      if (v in s.env) throw field(path, "also set in env");
      throw field(path, `\`${s.secret_env[v]}\` is not in secrets.names`);
    }
    for (const [file, name] of sorted(s.secret_files)) {
      throw field(`${at}.secret_files.${file}`, `\`${name}\` is not in secrets.names`);
    }
    if (s.pull_secret !== undefined) throw field(`${at}.pull_secret`, `\`${s.pull_secret}\` is not in secrets.names`);
  }
}

function validateService(s: Service, at: string): void {
  checkStrings(s, at);
  if (s.image.trim() === "" || /\s/u.test(s.image)) {
    throw field(`${at}.image`, "an image reference without spaces is required");
  }
  if (s.replicas === 0 || s.replicas > MAX_REPLICAS) throw field(`${at}.replicas`, `must be 1 to ${MAX_REPLICAS}`);
  for (const [key] of sorted(s.env)) {
    if (!isEnvName(key)) throw field(`${at}.env.${key}`, "not a valid variable name");
  }
  const seen = new Set<number>();
  s.ports.forEach((p, i) => {
    if (p.port === 0) throw field(`${at}.ports[${i}].port`, "must be 1 to 65535");
    if (seen.has(p.port)) throw field(`${at}.ports[${i}].port`, `port ${p.port} is listed twice`);
    seen.add(p.port);
    if (p.host_port !== undefined && p.expose === "none") {
      throw field(`${at}.ports[${i}].host_port`, "only exposed ports have a public port");
    }
  });
  const cpu = cpuMillis(s.resources.cpu);
  if (typeof cpu === "string") throw field(`${at}.resources.cpu`, cpu);
  const mem = bytes(s.resources.memory);
  if (typeof mem === "string") throw field(`${at}.resources.memory`, mem);
  if (s.resources.storage !== undefined) {
    const sto = bytes(s.resources.storage);
    if (typeof sto === "string") throw field(`${at}.resources.storage`, sto);
  }
  const http = s.ports.some((p) => p.expose === "http");
  if (s.idle_timeout !== undefined) {
    const where = `${at}.idle_timeout`;
    const t = seconds(s.idle_timeout);
    if (typeof t === "string") throw field(where, t);
    if (t < MIN_IDLE_TIMEOUT_S || t > MAX_IDLE_TIMEOUT_S) {
      throw field(where, `must be ${MIN_IDLE_TIMEOUT_S}s to ${MAX_IDLE_TIMEOUT_S / 3600n}h`);
    }
    if (!http) {
      throw field(where, "only a service with an `expose: http` port can scale to zero (the gateway wakes it)");
    }
  }
  validateGateway(s, at, http);
  const names = new Set<string>();
  s.volumes.forEach((v, i) => {
    if (v.name === RESERVED_VOLUME) {
      throw field(`${at}.volumes[${i}].name`, `\`${RESERVED_VOLUME}\` is the name of the secret files' volume`);
    }
    if (!isDnsLabel(v.name, 40) || names.has(v.name)) throw field(`${at}.volumes[${i}].name`, "a unique DNS label is required");
    names.add(v.name);
    if (!v.mount.startsWith("/") || v.mount.split("/").includes("..")) {
      throw field(`${at}.volumes[${i}].mount`, "an absolute path without `..` is required");
    }
    validatePersistence(v, `${at}.volumes[${i}]`, s.replicas);
  });
}

function validateGateway(s: Service, at: string, http: boolean): void {
  if (s.allow.length > 0 && !s.private) {
    throw field(`${at}.allow`, "only a private service has an allow list (set `private: true`)");
  }
  if (s.allow.length > MAX_ALLOWED) throw field(`${at}.allow`, `at most ${MAX_ALLOWED} addresses`);
  s.allow.forEach((a, i) => {
    if (!/^0x[0-9a-fA-F]{40}$/.test(a)) throw field(`${at}.allow[${i}]`, "not an address (0x and 40 hex digits)");
  });
  if (s.domains.length > MAX_DOMAINS) throw field(`${at}.domains`, `at most ${MAX_DOMAINS} domains`);
  s.domains.forEach((d, i) => {
    if (normalizeHost(d) !== d || !d.includes(".") || d.includes(":")) {
      throw field(`${at}.domains[${i}]`, "a lower-case hostname with at least two labels (e.g. shop.example.org)");
    }
  });
  if (s.domains.length > 0 && !http) {
    throw field(`${at}.domains`, "only a service with an `expose: http` port can have domains");
  }
  if (s.private && !http) {
    throw field(`${at}.private`, "only a service with an `expose: http` port can be private (the gateway signs people in)");
  }
}

function validatePersistence(v: Volume, at: string, replicas: number): void {
  if (v.size !== undefined && !v.persistent) {
    throw field(`${at}.size`, "only a persistent volume has a size (scratch volumes count in resources.storage)");
  }
  if (v.size === undefined && v.persistent) throw field(`${at}.size`, "a persistent volume needs a size, e.g. `1Gi`");
  if (v.size === undefined) return;
  const b = bytes(v.size);
  if (typeof b === "string") throw field(`${at}.size`, b);
  if (b === 0n || b > MAX_VOLUME_BYTES) throw field(`${at}.size`, "must be more than 0 and at most 16Ti");
  if (v.host_path !== undefined) throw field(`${at}.host_path`, "a persistent volume is the provider's, not a host directory");
  if (replicas !== 1) {
    throw field(`${at}.persistent`, "a service with a persistent volume has one replica (the volume is mounted by one pod)");
  }
}

/** No string reaches a container with a NUL byte (the kernel cannot pass one). */
function checkStrings(s: Service, at: string): void {
  const strings: [string, string][] = [[`${at}.image`, s.image]];
  for (const [name, l] of [["command", s.command], ["args", s.args], ["capabilities", s.capabilities]] as const) {
    l.forEach((v, i) => strings.push([`${at}.${name}[${i}]`, v]));
  }
  for (const [k, v] of sorted(s.env)) strings.push([`${at}.env.${k}`, k], [`${at}.env.${k}`, v]);
  s.volumes.forEach((v, i) => strings.push([`${at}.volumes[${i}].mount`, v.mount]));
  for (const [path, value] of strings) if (value.includes("\0")) throw field(path, "contains a NUL byte");
}

/** The volume the keeper mounts `secret_files` from; no manifest volume may take its name. */
const RESERVED_VOLUME = "berth-secrets";

const isEnvName = (k: string) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k);

const isDnsLabel = (s: string, max: number) =>
  s.length > 0 && s.length <= max && /^[a-z][a-z0-9-]*$/.test(s) && !s.endsWith("-");

/** berth-protocol's `routing::normalize_host`: a hostname (and optional port) lower-cased, or undefined. */
export function normalizeHost(raw: string): string | undefined {
  let host = raw;
  const colon = raw.lastIndexOf(":");
  if (colon >= 0) {
    const port = raw.slice(colon + 1);
    if (port === "" || !/^[0-9]+$/.test(port)) return undefined;
    host = raw.slice(0, colon);
  }
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (host === "" || host.length > MAX_HOSTNAME) return undefined;
  const ok = host.split(".").every(
    (l) => l !== "" && l.length <= MAX_LABEL && /^[A-Za-z0-9-]+$/.test(l) && !l.startsWith("-") && !l.endsWith("-"),
  );
  return ok ? host.toLowerCase() : undefined;
}

/** What the manifest reserves over every service and replica (call after validation). */
export function totals(m: Manifest): Totals {
  let cpu = 0n;
  let mem = 0n;
  let sto = 0n;
  for (const s of Object.values(m.services)) {
    const r = BigInt(s.replicas);
    cpu += BigInt(cpuMillis(s.resources.cpu) as number) * r;
    mem += mibCeil(bytes(s.resources.memory) as bigint) * r;
    const scratch = s.resources.storage === undefined ? 0n : gibCeil(bytes(s.resources.storage) as bigint);
    const persistent = s.volumes
      .filter((v) => v.persistent && v.size !== undefined)
      .reduce((sum, v) => sum + gibCeil(bytes(v.size as string) as bigint), 0n);
    sto += scratch * r + persistent;
  }
  return { cpuMillis: Number(cpu), memoryMiB: Number(mem), storageGiB: Number(sto) };
}

