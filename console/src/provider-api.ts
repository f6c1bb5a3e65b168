// The provider's API as the console uses it: the signed manifest upload, the lease as the
// keeper sees it, and the day-two token that opens its logs. Every request has a timeout;
// an unreachable provider is said in words.

import { type Address, type Hex, keccak256 } from "viem";

import type { App } from "./app";
import { Explained, explain } from "./errors";
import type { Connected } from "./wallet";

const domain = (app: App) => ({ name: "Berth", version: "1", chainId: app.config.chainId, verifyingContract: app.config.escrow });

/** The tenant's EIP-712 signature binding `bytes` to lease `id` of this deployment. */
export async function signUpload(app: App, w: Connected, id: bigint, bytes: Uint8Array): Promise<Hex> {
  try {
    return await w.client.signTypedData({
      account: w.account,
      domain: domain(app),
      types: { ManifestUpload: [{ name: "leaseId", type: "uint256" }, { name: "manifestHash", type: "bytes32" }] },
      primaryType: "ManifestUpload",
      message: { leaseId: id, manifestHash: keccak256(bytes) },
    });
  } catch (e) {
    throw explain("signing the manifest upload", e);
  }
}

/** What the provider said of an upload. */
export interface Uploaded { accepted: boolean; reason?: string }

const base = (endpoint: string) => endpoint.replace(/\/+$/, "");

async function call(url: string, init: RequestInit, what: string, limitMs = 15_000): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(limitMs), mode: "cors" });
  } catch (e) {
    const why = (e as Error).name === "TimeoutError" ? `no answer within ${limitMs / 1000} s` : "the provider cannot be reached (down, or its address is wrong, or it refuses this page's origin)";
    throw new Explained(`${what}: ${why}. Your lease and deposit are safe on chain; try again.`, "network");
  }
}

export async function upload(endpoint: string, id: bigint, bytes: Uint8Array, signature: Hex): Promise<Uploaded> {
  const what = "uploading the manifest to the provider";
  const resp = await call(`${base(endpoint)}/v1/leases/${id}/manifest`, {
    method: "PUT",
    headers: { "berth-signature": signature, "content-type": "application/yaml" },
    body: bytes as BodyInit,
  }, what);
  const text = await resp.text();
  let body: { accepted?: boolean; reject_reason?: string; error?: string } = {};
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: said below
  }
  if (resp.status === 200 || resp.status === 202) return { accepted: true };
  if (resp.status === 422) return { accepted: false, reason: [body.reject_reason, body.error].filter(Boolean).join(": ") };
  throw new Explained(`${what}: the provider answered ${resp.status}: ${body.error ?? text.slice(0, 200)}`, "network");
}

/** A day-two token (`<expiresAt>.<signature>`) for one operation of a lease, valid 10 minutes. */
export async function accessToken(app: App, w: Connected, id: bigint, operation: "logs" | "events"): Promise<string> {
  const expiresAt = (await app.reader.now()) + 600n;
  try {
    const sig = await w.client.signTypedData({
      account: w.account,
      domain: domain(app),
      types: { LeaseAccess: [{ name: "leaseId", type: "uint256" }, { name: "operation", type: "string" }, { name: "expiresAt", type: "uint64" }] },
      primaryType: "LeaseAccess",
      message: { leaseId: id, operation, expiresAt },
    });
    return `${expiresAt}.${sig}`;
  } catch (e) {
    throw explain(`signing access to the lease's ${operation}`, e);
  }
}

export const logsUrl = (endpoint: string, id: bigint, token: string) =>
  `${base(endpoint)}/v1/leases/${id}/logs?follow=true&tail=200&access=${encodeURIComponent(token)}`;

export type { Address };
