import { describe, expect, it } from "vitest";

import { ConfigError, readConfig } from "../src/config";

const good = {
  chainId: 31337,
  providerRegistry: "0x5fbdb2315678afecb367f032d93f642f64180aa3",
  leaseEscrow: "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",
  paymentToken: "0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
  rpcUrl: "http://127.0.0.1:8545",
};

describe("config.json", () => {
  it("reads a deployment file plus the RPC URL", () => {
    const c = readConfig({ ...good, startBlock: 7, minOpenRunway: 70 });
    expect(c.escrow).toBe("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512");
    expect(c.startBlock).toBe(7n);
    expect(c.chainName).toBe("chain 31337");
  });

  it("names what is missing or wrong", () => {
    const { rpcUrl: _, ...noRpc } = good;
    const cases: [unknown, RegExp][] = [
      [null, /not a JSON object/],
      [noRpc, /no `rpcUrl`/],
      [{ ...good, rpcUrl: "ws://x" }, /`rpcUrl` is not an http\(s\) URL/],
      [{ ...good, leaseEscrow: "0x12" }, /`leaseEscrow` is not an address/],
      [{ ...good, chainId: "31337" }, /`chainId` is not a whole number/],
      [{ ...good, startBlock: -1 }, /`startBlock` is not a whole number/],
    ];
    for (const [raw, message] of cases) {
      expect(() => readConfig(raw)).toThrow(ConfigError);
      expect(() => readConfig(raw)).toThrow(message);
    }
  });
});
