import { UserRejectedRequestError, encodeErrorResult } from "viem";
import { describe, expect, it } from "vitest";

import { decodeRevert, explain, explainRevert } from "../src/errors";
import { leaseEscrowAbi, providerRegistryAbi } from "../src/generated/abi";

describe("errors a person understands", () => {
  it("decode a revert to the contract's custom error and explain it", () => {
    const data = encodeErrorResult({ abi: leaseEscrowAbi, errorName: "LeaseEscrow_InsufficientDeposit", args: [5n, 20_001n] });
    const d = decodeRevert(data);
    expect(d?.name).toBe("LeaseEscrow_InsufficientDeposit");
    expect(explainRevert(d!.name, d!.args)).toBe(
      "The deposit 5 is below the minimum 20001 the escrow requires (its minimum runway at this lease's maximum rate). (LeaseEscrow_InsufficientDeposit)",
    );
    const reg = encodeErrorResult({ abi: providerRegistryAbi, errorName: "ProviderRegistry_NotProviderOwner", args: [3n, "0x0000000000000000000000000000000000000001"] });
    expect(decodeRevert(reg)?.name).toBe("ProviderRegistry_NotProviderOwner");
    expect(decodeRevert("0xdeadbeef")).toBeUndefined();
  });

  it("an error without its own sentence still reads as words", () => {
    expect(explainRevert("LeaseEscrow_EmptyBatch", [])).toBe("Empty Batch. (LeaseEscrow_EmptyBatch)");
  });

  it("a refusal in the wallet says nothing was sent", () => {
    for (const e of [{ code: 4001, message: "User rejected the request." }, new UserRejectedRequestError(new Error("no"))]) {
      const x = explain("signing the spending permit", e);
      expect(x.kind).toBe("rejected");
      expect(x.message).toBe("You rejected the request in your wallet: signing the spending permit was not done, and nothing was sent to the chain.");
    }
  });

  it("an unreachable server is said so", () => {
    expect(explain("reading the providers", new TypeError("Failed to fetch")).kind).toBe("network");
  });
});
