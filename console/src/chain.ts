// What the console reads from the chain, straight from the contracts (no server of ours in
// between): providers and their prices, leases, their events, the payment token.

import { type Address, type PublicClient, createPublicClient, http } from "viem";

import type { Prices } from "./amounts";
import type { Config } from "./config";
import { leaseEscrowAbi, providerRegistryAbi, tokenAbi } from "./generated/abi";
import { chainOf } from "./wallet";

export const LEASE_STATUS = ["none", "pending", "active", "closing", "closed", "rejected", "cancelled", "suspended"] as const;
export const PROVIDER_STATUS = ["none", "active", "paused", "exiting", "exited"] as const;
export const REJECT_REASON = [
  "unspecified", "capacity unavailable", "insufficient runway", "manifest unavailable", "manifest hash mismatch",
  "manifest invalid", "resources exceed the reservation", "policy violation",
] as const;

export interface Offer {
  id: number;
  owner: Address;
  operator: Address;
  status: (typeof PROVIDER_STATUS)[number];
  endpoint: string;
  attributes: [string, string][];
  token: Address;
  free: [number, number, number];
  capacity: [number, number, number];
  prices: Prices;
  activeLeases: number;
  stake: bigint;
}

export interface Token { address: Address; symbol: string; decimals: number; name: string }

export class Reader {
  readonly client: PublicClient;

  constructor(readonly config: Config) {
    this.client = createPublicClient({ chain: chainOf(config), transport: http(config.rpcUrl, { timeout: 15_000, retryCount: 2 }) });
  }

  async providers(): Promise<Offer[]> {
    const c = this.config;
    const count = await this.client.readContract({ address: c.registry, abi: providerRegistryAbi, functionName: "providerCount" });
    const out: Offer[] = [];
    for (let offset = 0n; offset < count; offset += 100n) {
      const page = await this.client.readContract({ address: c.registry, abi: providerRegistryAbi, functionName: "listProviders", args: [offset, 100n] });
      const prices = await Promise.all(
        page.map((p, i) => this.client.readContract({ address: c.registry, abi: providerRegistryAbi, functionName: "pricesOf", args: [offset + BigInt(i) + 1n, p.priceVersion] })),
      );
      page.forEach((p, i) => {
        const pr = prices[i];
        if (!pr) return;
        out.push({
          id: Number(offset) + i + 1,
          owner: p.owner,
          operator: p.operator,
          status: PROVIDER_STATUS[p.status] ?? "none",
          endpoint: p.endpoint,
          attributes: parseAttributes(p.attributes),
          token: p.token,
          free: [p.cpuMillis - p.allocatedCpuMillis, p.memoryMiB - p.allocatedMemoryMiB, p.storageGiB - p.allocatedStorageGiB],
          capacity: [p.cpuMillis, p.memoryMiB, p.storageGiB],
          prices: { baseRate: pr.baseRate, cpuPrice: pr.cpuPrice, memoryPrice: pr.memoryPrice, storagePrice: pr.storagePrice },
          activeLeases: p.activeLeases,
          stake: p.stake,
        });
      });
    }
    return out;
  }

  async token(address: Address): Promise<Token> {
    const [symbol, decimals, name] = await Promise.all([
      this.client.readContract({ address, abi: tokenAbi, functionName: "symbol" }),
      this.client.readContract({ address, abi: tokenAbi, functionName: "decimals" }),
      this.client.readContract({ address, abi: tokenAbi, functionName: "name" }),
    ]);
    return { address, symbol, decimals, name };
  }

  balanceOf = (token: Address, who: Address) =>
    this.client.readContract({ address: token, abi: tokenAbi, functionName: "balanceOf", args: [who] });

  allowance = (token: Address, who: Address) =>
    this.client.readContract({ address: token, abi: tokenAbi, functionName: "allowance", args: [who, this.config.escrow] });

  lease = (id: bigint) => this.client.readContract({ address: this.config.escrow, abi: leaseEscrowAbi, functionName: "getLease", args: [id] });

  /** Charges as of now (the lease's stored fields settle only when a transaction touches it). */
  async charges(id: bigint): Promise<{ claimable: bigint; pending: bigint }> {
    const [claimable, pending] = await Promise.all([
      this.client.readContract({ address: this.config.escrow, abi: leaseEscrowAbi, functionName: "claimableOf", args: [id] }),
      this.client.readContract({ address: this.config.escrow, abi: leaseEscrowAbi, functionName: "pendingOf", args: [id] }),
    ]);
    return { claimable, pending };
  }

  autoTopUp = (id: bigint) => this.client.readContract({ address: this.config.escrow, abi: leaseEscrowAbi, functionName: "autoTopUpOf", args: [id] });

  minRunway = () => this.client.readContract({ address: this.config.escrow, abi: leaseEscrowAbi, functionName: "minRunway" });

  async now(): Promise<bigint> {
    return (await this.client.getBlock({ blockTag: "latest" })).timestamp;
  }

  /** The lease's history: opening, confirmation (endpoint), rejection, reports, top-ups, closing. */
  async history(id: bigint) {
    const logs = await this.client.getContractEvents({
      address: this.config.escrow,
      abi: leaseEscrowAbi,
      args: { leaseId: id },
      fromBlock: this.config.startBlock,
      toBlock: "latest",
    });
    return logs;
  }

  /** Leases opened by `tenant`, newest first. */
  async leasesOf(tenant: Address): Promise<bigint[]> {
    const logs = await this.client.getContractEvents({
      address: this.config.escrow, abi: leaseEscrowAbi, eventName: "LeaseOpened", args: { tenant }, fromBlock: this.config.startBlock,
    });
    return logs.map((l) => l.args.leaseId).filter((x): x is bigint => x !== undefined).reverse();
  }

  /** Leases of provider `id` and what was claimed for each. */
  async providerLeases(id: number) {
    const [opened, claimed] = await Promise.all([
      this.client.getContractEvents({ address: this.config.escrow, abi: leaseEscrowAbi, eventName: "LeaseOpened", args: { providerId: BigInt(id) }, fromBlock: this.config.startBlock }),
      this.client.getContractEvents({ address: this.config.escrow, abi: leaseEscrowAbi, eventName: "ChargesClaimed", args: { providerId: BigInt(id) }, fromBlock: this.config.startBlock }),
    ]);
    return { opened, claimed };
  }
}

/** `key=value,key=value` as the registry stores attributes. */
export function parseAttributes(text: string): [string, string][] {
  return text
    .split(",")
    .map((p) => p.split("="))
    .filter((kv): kv is [string, string] => kv.length === 2 && kv[0]!.trim() !== "")
    .map(([k, v]) => [k.trim(), v.trim()]);
}
