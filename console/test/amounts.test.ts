import { describe, expect, it } from "vitest";

import {
  AmountError, HOURLY_UNITS, costOf, formatAmount, hourlyBaseUnits, parseAmount, priceFromHourly, rate,
  runwayOf, showAmount, showDuration,
} from "../src/amounts";

describe("amounts", () => {
  it("round-trip as the CLI's do", () => {
    expect(parseAmount("deposit", "12.5", 6)).toBe(12_500_000n);
    expect(parseAmount("deposit", "0.000001", 6)).toBe(1n);
    expect(parseAmount("deposit", "7", 0)).toBe(7n);
    expect(parseAmount("deposit", ".5", 6)).toBe(500_000n);
    expect(formatAmount(12_500_000n, 6)).toBe("12.5");
    expect(formatAmount(1n, 6)).toBe("0.000001");
    expect(formatAmount(3_000_000n, 6)).toBe("3");
    expect(formatAmount(0n, 18)).toBe("0");
  });

  it("refuse bad input and name it", () => {
    for (const bad of ["", "-1", "1e5", "1.0000001", "abc", ".", "1.2.3", "0x10"]) {
      expect(() => parseAmount("deposit", bad, 6), bad).toThrow(AmountError);
      expect(() => parseAmount("deposit", bad, 6), bad).toThrow(/^deposit "/);
    }
  });

  it("show short amounts a person reads", () => {
    expect(showAmount(1_234_567_891n, 6, "tUSD")).toBe("1,234.5678 tUSD");
    expect(showAmount(20_001n, 6, "tUSD")).toBe("0.02 tUSD");
    expect(showAmount(3n, 6, "tUSD")).toBe("0.000003 tUSD");
    expect(showAmount(0n, 6, "tUSD")).toBe("0 tUSD");
  });
});

describe("prices", () => {
  const devnet = { baseRate: 2_777_777_778n, cpuPrice: 5_555_556n, memoryPrice: 271_267n, storagePrice: 0n };

  it("match what the CLI registers and the contract charges", () => {
    expect(priceFromHourly("CPU price", "0.02", 6, HOURLY_UNITS[1])).toBe(5_555_556n);
    expect(priceFromHourly("base price", "0.01", 6, HOURLY_UNITS[0])).toBe(2_777_777_778n);
    expect(hourlyBaseUnits(5_555_556n, HOURLY_UNITS[1])).toBe(20_000n);
    const r = rate(devnet, 500, 0, 0);
    expect(r).toBe(2_777_777_778n + 500n * 5_555_556n);
    expect(costOf(3600n, r)).toBe(20_001n);
    expect(costOf(1n, 1_500_000_001n)).toBe(2n);
    expect(runwayOf(20_001n, r)).toBe(3600n);
    expect(runwayOf(5n, 0n)).toBeUndefined();
  });

  it("durations read as people say them", () => {
    expect(showDuration(45)).toBe("45 s");
    expect(showDuration(3600 * 26 + 60 * 5)).toBe("1 d 2 h");
    expect(showDuration(7260)).toBe("2 h 1 min");
    expect(showDuration(0)).toBe("none");
    expect(showDuration(undefined)).toBe("unlimited");
  });
});
