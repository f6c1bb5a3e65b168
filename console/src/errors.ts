// Errors a person understands: a wallet's refusal, the wrong chain, short funds, a provider
// that does not answer, and every revert decoded to the contract's custom error and explained.

import { BaseError, ContractFunctionRevertedError, UserRejectedRequestError, decodeErrorResult, type Hex } from "viem";

import { leaseEscrowAbi, providerRegistryAbi, tokenAbi } from "./generated/abi";

const STATUS = ["none", "pending", "active", "closing", "closed", "rejected", "cancelled", "suspended"];
const PROVIDER_STATUS = ["none", "active", "paused", "exiting", "exited"];
const RESOURCE = ["CPU", "memory", "storage"];

const when = (t: unknown) => new Date(Number(t) * 1000).toLocaleString();

/** What each custom error means to the person who caused it. */
const EXPLAIN: Record<string, (a: readonly unknown[]) => string> = {
  LeaseEscrow_Paused: () => "The escrow is paused by its owner: no new leases for now. Running leases are not affected.",
  LeaseEscrow_ZeroAmount: () => "The amount is zero.",
  LeaseEscrow_ZeroResources: () => "The manifest reserves no CPU or memory.",
  LeaseEscrow_ReservationTooLarge: (a) => `The ${RESOURCE[Number(a[0])]} reservation (${a[1]}) is above the escrow's limit of ${a[2]}.`,
  LeaseEscrow_UnknownProvider: (a) => `There is no provider ${a[0]}.`,
  LeaseEscrow_ProviderNotAccepting: (a) => `Provider ${a[0]} takes no new leases (it is ${PROVIDER_STATUS[Number(a[1])]}).`,
  LeaseEscrow_InsufficientCapacity: () => "The provider no longer has the free capacity this lease needs (another lease took it). Choose another provider.",
  LeaseEscrow_RateAboveMax: () => "The provider changed its prices while you were deciding. Reload to see the new price.",
  LeaseEscrow_InsufficientDeposit: (a) => `The deposit ${a[0]} is below the minimum ${a[1]} the escrow requires (its minimum runway at this lease's maximum rate).`,
  LeaseEscrow_InsufficientAllowance: (a) => `The escrow may spend only ${a[1]} of your tokens and needs ${a[2]}: approve it first.`,
  LeaseEscrow_InsufficientBalance: (a) => `Your token balance is ${a[1]}, and this needs ${a[2]}.`,
  LeaseEscrow_UnknownLease: (a) => `There is no lease ${a[0]}.`,
  LeaseEscrow_InvalidLeaseStatus: (a) => `Lease ${a[0]} is ${STATUS[Number(a[1])]}, which does not allow this.`,
  LeaseEscrow_NotTenant: (a) => `Only the lease's tenant may do this; the connected account ${a[1]} is not.`,
  LeaseEscrow_NotOperator: () => "Only the provider's operator may do this.",
  LeaseEscrow_NotProviderAgent: () => "Only the provider's owner or operator may do this.",
  LeaseEscrow_AcceptTimeoutNotReached: (a) => `The provider still has time to answer; the lease can be cancelled from ${when(a[1])}.`,
  LeaseEscrow_FinalReportWindowOpen: (a) => `The provider may still send its final usage report; you can withdraw from ${when(a[1])}.`,
  LeaseEscrow_NothingToWithdraw: () => "There is nothing left to withdraw.",
  LeaseEscrow_NothingToDispute: () => "No charge is inside its challenge window: there is nothing to dispute.",
  LeaseEscrow_InvalidAutoTopUp: () => "That auto top-up policy is not valid: the target runway must be above the trigger, the amounts above zero and the expiry in the future.",
  LeaseEscrow_NoAutoTopUp: () => "The lease has no auto top-up policy.",
  LeaseEscrow_BalanceOverflow: () => "That amount would overflow the lease's balance.",
  LeaseEscrow_TransferFailed: () => "The token refused the transfer.",
  ProviderRegistry_TokenNotAllowed: (a) => `The token ${a[0]} is not accepted for payment.`,
  ProviderRegistry_StakeBelowMinimum: (a) => `The stake ${a[0]} is below the minimum ${a[1]}.`,
  ProviderRegistry_EmptyEndpoint: () => "The provider needs an endpoint URL.",
  ProviderRegistry_ZeroCapacity: () => "Every capacity (CPU, memory) must be above zero.",
  ProviderRegistry_UnknownProvider: (a) => `There is no provider ${a[0]}.`,
  ProviderRegistry_NotProviderOwner: (a) => `Only provider ${a[0]}'s owner may do this; the connected account is not.`,
  ProviderRegistry_InvalidProviderStatus: (a) => `Provider ${a[0]} is ${PROVIDER_STATUS[Number(a[1])]}, which does not allow this.`,
  ProviderRegistry_ActiveLeasesRemain: (a) => `Provider ${a[0]} still has ${a[1]} leases running.`,
};

/** A user-facing error: what happened and, when known, the custom error behind it. */
export class Explained extends Error {
  constructor(
    message: string,
    readonly kind: "rejected" | "revert" | "chain" | "funds" | "network" | "other",
    readonly errorName?: string,
  ) {
    super(message);
  }
}

const ABIS = [leaseEscrowAbi, providerRegistryAbi, tokenAbi] as const;

/** Decodes revert data against every Berth ABI. */
export function decodeRevert(data: Hex): { name: string; args: readonly unknown[] } | undefined {
  for (const abi of ABIS) {
    try {
      const r = decodeErrorResult({ abi, data });
      return { name: r.errorName, args: r.args ?? [] };
    } catch {
      // not this contract's error
    }
  }
  return undefined;
}

export function explainRevert(name: string, args: readonly unknown[]): string {
  const f = EXPLAIN[name];
  const why = f ? f(args) : `${name.replace(/^[A-Za-z]+_/, "").replace(/([a-z])([A-Z])/g, "$1 $2")}.`;
  return `${why} (${name})`;
}

/** Turns anything a wallet, viem or fetch threw into a sentence `what` failed with. */
export function explain(what: string, e: unknown): Explained {
  if (e instanceof Explained) return e;
  const code = (e as { code?: number })?.code;
  if (e instanceof BaseError) {
    if (e.walk((x) => x instanceof UserRejectedRequestError)) {
      return new Explained(`You rejected the request in your wallet: ${what} was not done, and nothing was sent to the chain.`, "rejected");
    }
    const reverted = e.walk((x) => x instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError) {
      const name = reverted.data?.errorName;
      if (name) return new Explained(`${what} would fail: ${explainRevert(name, reverted.data?.args ?? [])}`, "revert", name);
      if (reverted.raw) {
        const d = decodeRevert(reverted.raw);
        if (d) return new Explained(`${what} would fail: ${explainRevert(d.name, d.args)}`, "revert", d.name);
      }
    }
    const data = findData(e);
    if (data) {
      const d = decodeRevert(data);
      if (d) return new Explained(`${what} would fail: ${explainRevert(d.name, d.args)}`, "revert", d.name);
    }
    if (/insufficient funds/i.test(e.message)) {
      return new Explained(`${what}: your account has not enough ETH to pay for gas.`, "funds");
    }
    if (/chain/i.test(e.shortMessage) && /mismatch|does not match/i.test(e.shortMessage)) {
      return new Explained(`${what}: your wallet is on another chain. Switch it to the console's chain and try again.`, "chain");
    }
    return new Explained(`${what} failed: ${e.shortMessage}`, "other");
  }
  if (code === 4001) {
    return new Explained(`You rejected the request in your wallet: ${what} was not done, and nothing was sent to the chain.`, "rejected");
  }
  if (e instanceof TypeError && /fetch/i.test(e.message)) {
    return new Explained(`${what}: the server could not be reached (${e.message}).`, "network");
  }
  return new Explained(`${what} failed: ${(e as Error)?.message ?? String(e)}`, "other");
}

function findData(e: BaseError): Hex | undefined {
  let found: Hex | undefined;
  e.walk((x) => {
    const d = (x as { data?: unknown }).data;
    if (typeof d === "string" && d.startsWith("0x") && d.length >= 10) found = d as Hex;
    return false;
  });
  return found;
}
