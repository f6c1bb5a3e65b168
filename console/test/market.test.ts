import { describe, expect, it } from "vitest";

import type { Offer } from "../src/chain";
import { judge } from "../src/market";

const token = "0x00000000000000000000000000000000000000aa";
const offer = (id: number, over: Partial<Offer> = {}): Offer => ({
  id,
  owner: "0x0000000000000000000000000000000000000001",
  operator: "0x0000000000000000000000000000000000000002",
  status: "active",
  endpoint: "http://127.0.0.1:1",
  attributes: [["region", "local"]],
  token,
  free: [4000, 8192, 10],
  capacity: [4000, 8192, 10],
  prices: { baseRate: 2_777_777_778n, cpuPrice: 5_555_556n, memoryPrice: 0n, storagePrice: 0n },
  activeLeases: 0,
  stake: 0n,
  ...over,
});

describe("the market", () => {
  const need = { cpuMillis: 500, memoryMiB: 256, storageGiB: 0 };

  it("puts fitting providers first, cheapest first, and names why the others are out", () => {
    const v = judge(
      [
        offer(1, { prices: { baseRate: 10n ** 12n, cpuPrice: 0n, memoryPrice: 0n, storagePrice: 0n } }),
        offer(2),
        offer(3, { status: "paused" }),
        offer(4, { free: [100, 8192, 10] }),
        offer(5, { attributes: [["region", "eu"]] }),
      ],
      need,
      token,
      [["region", "local"]],
    );
    expect(v.map((x) => x.offer.id)).toEqual([2, 1, 3, 4, 5]);
    expect(v[0]?.hourly).toBe(20_001n);
    expect(v.map((x) => x.excluded)).toEqual([
      undefined,
      undefined,
      "paused (takes no new leases)",
      "free CPU 100 millicores < 500 needed",
      "attribute region=eu, wanted region=local",
    ]);
  });

  it("excludes a provider paid in another token", () => {
    const [v] = judge([offer(1, { token: "0x00000000000000000000000000000000000000bb" })], need, token);
    expect(v?.excluded).toMatch(/another token/);
  });
});
