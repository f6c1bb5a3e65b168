// The Berth manifest, read and checked in the page with the rules of berth-protocol's parser
// (protocol/src/manifest): the same limits, the same order of checks and the same field paths
// in errors. `protocol/vectors/manifests.json` holds cases both parsers are tested against.

import { isAlias, isCollection, isMap, isScalar, isSeq, type Node, parseAllDocuments, visit } from "yaml";

import { ManifestError, syntax } from "./manifest-error";
import { validate } from "./manifest-rules";

export const MAX_MANIFEST_BYTES = 64 * 1024;
export const VERSION = 1;
export const MAX_SERVICES = 16;
export const MAX_REPLICAS = 16;
export const MIN_IDLE_TIMEOUT_S = 5n;
export const MAX_IDLE_TIMEOUT_S = 7n * 24n * 3600n;
export const MAX_DOMAINS = 4;
export const MAX_ALLOWED = 32;
export const MAX_VOLUME_BYTES = 16n << 40n;
const MAX_DEPTH = 16;
const MAX_NODES = 20_000;

export type Expose = "http" | "tcp" | "none";
export interface Port { port: number; expose: Expose; host_port?: number }
export interface Volume { name: string; mount: string; host_path?: string; persistent: boolean; size?: string }
export interface Service {
  image: string;
  command: string[];
  args: string[];
  env: Record<string, string>;
  secret_env: Record<string, string>;
  secret_files: Record<string, string>;
  pull_secret?: string;
  ports: Port[];
  resources: { cpu: string; memory: string; storage?: string };
  replicas: number;
  privileged: boolean;
  host_network: boolean;
  capabilities: string[];
  volumes: Volume[];
  idle_timeout?: string;
  private: boolean;
  allow: string[];
  shell: boolean;
  domains: string[];
}
export interface Manifest { version: number; services: Record<string, Service>; secrets?: unknown }

/** What a lease must reserve for a manifest: totals over every service and replica. */
export interface Totals { cpuMillis: number; memoryMiB: number; storageGiB: number }

/** Parses and validates manifest text or bytes; throws a {@link ManifestError}. */
export function parseManifest(input: string | Uint8Array): Manifest {
  const raw = typeof input === "string" ? new TextEncoder().encode(input) : input;
  if (raw.length > MAX_MANIFEST_BYTES) {
    throw syntax(`${raw.length} bytes, the limit is ${MAX_MANIFEST_BYTES}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw syntax("not UTF-8");
  }
  const manifest = shape(load(text));
  validate(manifest);
  return manifest;
}

/** YAML → plain data, bounded first: one document, no anchors or aliases, capped depth and size. */
function load(text: string): unknown {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: false });
  if (!Array.isArray(docs)) throw syntax("not YAML");
  if (docs.length > 1) throw syntax("several YAML documents (one manifest is one document)");
  const doc = docs[0];
  if (!doc) throw syntax("the manifest is empty");
  if (doc.errors.length > 0) throw syntax(doc.errors[0]?.message ?? "not YAML");
  let nodes = 0;
  let problem: string | undefined;
  visit(doc, {
    Node(_key, node, path) {
      nodes += 1;
      if (isAlias(node) || ((isCollection(node) || isScalar(node)) && node.anchor)) {
        problem = "YAML anchors and aliases are not allowed";
        return visit.BREAK;
      }
      const depth = path.filter((p) => isCollection(p)).length;
      if (depth > MAX_DEPTH) {
        problem = `nested deeper than ${MAX_DEPTH} levels`;
        return visit.BREAK;
      }
      if (nodes > MAX_NODES) {
        problem = `more than ${MAX_NODES} YAML nodes`;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (problem) throw syntax(problem);
  return plain(doc.contents);
}

/** A plain (unquoted) scalar YAML resolved to a number, boolean or null; serde reads its source
 * text where the manifest wants a string (`cpu: 1` is the string "1"). */
class Plain {
  constructor(
    readonly value: number | boolean | null,
    readonly source: string,
  ) {}
}

function plain(node: Node | null | undefined): unknown {
  if (node === null || node === undefined) return null;
  if (isMap(node)) {
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const k = plain(pair.key as Node);
      const key = k instanceof Plain ? k.source : String(k);
      out[key] = plain(pair.value as Node);
    }
    return out;
  }
  if (isSeq(node)) return node.items.map((n) => plain(n as Node));
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "boolean" || v === null) return new Plain(v, node.source ?? String(v));
    if (typeof v === "bigint") return new Plain(Number(v), node.source ?? String(v));
  }
  throw syntax("unsupported YAML value");
}

// ------------------------------------------------------------------ shape (serde's part)

type Obj = Record<string, unknown>;

function object(v: unknown, at: string, fields: readonly string[]): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Plain) {
    throw syntax(`${at}: expected a map`);
  }
  for (const k of Object.keys(v)) {
    if (!fields.includes(k)) throw syntax(`${at}: unknown field \`${k}\`, expected one of ${fields.join(", ")}`);
  }
  return v as Obj;
}

function required(o: Obj, key: string, at: string): unknown {
  if (!(key in o)) throw syntax(`${at}: missing field \`${key}\``);
  return o[key];
}

function str(v: unknown, at: string): string {
  if (typeof v === "string") return v;
  if (v instanceof Plain && v.value !== null) return v.source;
  throw syntax(`${at}: expected a string`);
}

function uint(v: unknown, at: string, max: number): number {
  const n = v instanceof Plain ? v.value : undefined;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > max) {
    throw syntax(`${at}: expected an integer from 0 to ${max}`);
  }
  return n;
}

function bool(v: unknown, at: string): boolean {
  if (v === undefined) return false;
  const b = v instanceof Plain ? v.value : undefined;
  if (typeof b !== "boolean") throw syntax(`${at}: expected true or false`);
  return b;
}

function list<T>(v: unknown, at: string, item: (x: unknown, at: string) => T): T[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw syntax(`${at}: expected a list`);
  return v.map((x, i) => item(x, `${at}[${i}]`));
}

function stringMap(v: unknown, at: string): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Plain) {
    throw syntax(`${at}: expected a map`);
  }
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) out[k] = str(x, `${at}.${k}`);
  return out;
}

function optional<T>(v: unknown, read: (x: unknown) => T): T | undefined {
  return v === undefined || (v instanceof Plain && v.value === null) ? undefined : read(v);
}

const SERVICE_FIELDS = [
  "image", "command", "args", "env", "secret_env", "secret_files", "pull_secret", "ports", "resources",
  "replicas", "privileged", "host_network", "capabilities", "volumes", "idle_timeout",
  "private", "allow", "shell", "domains",
] as const;

function shape(v: unknown): Manifest {
  const o = object(v, "manifest", ["version", "services", "secrets"]);
  const version = uint(required(o, "version", "manifest"), "version", 0xffff_ffff);
  const rawServices = required(o, "services", "manifest");
  if (typeof rawServices !== "object" || rawServices === null || Array.isArray(rawServices) || rawServices instanceof Plain) {
    throw syntax("services: expected a map");
  }
  const services: Record<string, Service> = {};
  for (const [name, s] of Object.entries(rawServices)) services[name] = service(s, `services.${name}`);
  return { version, services, secrets: o.secrets instanceof Plain && o.secrets.value === null ? undefined : o.secrets };
}

function service(v: unknown, at: string): Service {
  const o = object(v, at, SERVICE_FIELDS);
  const r = object(required(o, "resources", at), `${at}.resources`, ["cpu", "memory", "storage"]);
  return {
    image: str(required(o, "image", at), `${at}.image`),
    command: list(o.command, `${at}.command`, str),
    args: list(o.args, `${at}.args`, str),
    env: stringMap(o.env, `${at}.env`),
    secret_env: stringMap(o.secret_env, `${at}.secret_env`),
    secret_files: stringMap(o.secret_files, `${at}.secret_files`),
    pull_secret: optional(o.pull_secret, (x) => str(x, `${at}.pull_secret`)),
    ports: list(o.ports, `${at}.ports`, port),
    resources: {
      cpu: str(required(r, "cpu", `${at}.resources`), `${at}.resources.cpu`),
      memory: str(required(r, "memory", `${at}.resources`), `${at}.resources.memory`),
      storage: optional(r.storage, (x) => str(x, `${at}.resources.storage`)),
    },
    replicas: o.replicas === undefined ? 1 : uint(o.replicas, `${at}.replicas`, 0xffff_ffff),
    privileged: bool(o.privileged, `${at}.privileged`),
    host_network: bool(o.host_network, `${at}.host_network`),
    capabilities: list(o.capabilities, `${at}.capabilities`, str),
    volumes: list(o.volumes, `${at}.volumes`, volume),
    idle_timeout: optional(o.idle_timeout, (x) => str(x, `${at}.idle_timeout`)),
    private: bool(o.private, `${at}.private`),
    allow: list(o.allow, `${at}.allow`, str),
    shell: bool(o.shell, `${at}.shell`),
    domains: list(o.domains, `${at}.domains`, str),
  };
}

function port(v: unknown, at: string): Port {
  const o = object(v, at, ["port", "expose", "host_port"]);
  const expose = o.expose === undefined ? "none" : str(o.expose, `${at}.expose`);
  if (expose !== "http" && expose !== "tcp" && expose !== "none") {
    throw syntax(`${at}.expose: unknown variant \`${expose}\`, expected http, tcp or none`);
  }
  return {
    port: uint(required(o, "port", at), `${at}.port`, 65535),
    expose,
    host_port: optional(o.host_port, (x) => uint(x, `${at}.host_port`, 65535)),
  };
}

function volume(v: unknown, at: string): Volume {
  const o = object(v, at, ["name", "mount", "host_path", "persistent", "size"]);
  return {
    name: str(required(o, "name", at), `${at}.name`),
    mount: str(required(o, "mount", at), `${at}.mount`),
    host_path: optional(o.host_path, (x) => str(x, `${at}.host_path`)),
    persistent: bool(o.persistent, `${at}.persistent`),
    size: optional(o.size, (x) => str(x, `${at}.size`)),
  };
}

export { ManifestError } from "./manifest-error";
export { totals } from "./manifest-rules";
