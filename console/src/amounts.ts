// Token amounts and prices as people write them ("12.5" tokens, "0.02" per core-hour) and as
// the contracts hold them (base units; prices in billionths of a base unit per unit-second),
// with the formulas of LeaseMath.sol (as berth-protocol's pricing.rs computes them).

export const PRICE_SCALE = 1_000_000_000n;
/** Per-unit-second factors of an hourly price: base per lease-hour, CPU per core-hour, memory per GiB-hour, storage per GiB-hour. */
export const HOURLY_UNITS = [3600n, 3600n * 1000n, 3600n * 1024n, 3600n] as const;

/** A provider's prices, scaled per unit-second. */
export interface Prices { baseRate: bigint; cpuPrice: bigint; memoryPrice: bigint; storagePrice: bigint }

export class AmountError extends Error {}

/** Parses a decimal amount of a token with `decimals` into base units; `what` names the input in the error. */
export function parseAmount(what: string, text: string, decimals: number): bigint {
  const t = text.trim();
  const bad = (why: string) => new AmountError(`${what} "${text}": ${why}`);
  const [whole = "", frac = "", ...rest] = t.split(".");
  if (rest.length > 0) throw bad("not a non-negative decimal number");
  if (whole === "" && frac === "") throw bad("not a number");
  if (!/^[0-9]*$/.test(whole) || !/^[0-9]*$/.test(frac)) throw bad("not a non-negative decimal number");
  if (frac.length > decimals) throw bad(`more than ${decimals} decimal places (the token's precision)`);
  return BigInt((whole || "0") + frac.padEnd(decimals, "0"));
}

/** Base units as a decimal amount without trailing zeros ("12.5", "0.000001", "3"). */
export function formatAmount(amount: bigint, decimals: number): string {
  const negative = amount < 0n;
  const s = (negative ? -amount : amount).toString();
  if (decimals === 0) return (negative ? "-" : "") + s;
  const padded = s.padStart(decimals + 1, "0");
  const whole = padded.slice(0, padded.length - decimals);
  const frac = padded.slice(padded.length - decimals).replace(/0+$/, "");
  return (negative ? "-" : "") + (frac ? `${whole}.${frac}` : whole);
}

/** A short display of an amount: at most `digits` significant decimals, thousands grouped. */
export function showAmount(amount: bigint, decimals: number, symbol: string, digits = 4): string {
  const full = formatAmount(amount, decimals);
  const [whole = "0", frac = ""] = full.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  let shown = frac;
  if (frac.length > digits) {
    const lead = frac.search(/[1-9]/);
    shown = frac.slice(0, Math.max(digits, lead + 2)).replace(/0+$/, "");
  }
  return `${grouped}${shown ? `.${shown}` : ""} ${symbol}`.trim();
}

/** An hourly price in token units as the scaled per-unit-second price the registry stores (nearest). */
export function priceFromHourly(what: string, text: string, decimals: number, perHourUnits: bigint): bigint {
  const scaledHourly = parseAmount(what, text, decimals + 9);
  return (scaledHourly + perHourUnits / 2n) / perHourUnits;
}

/** A scaled per-unit-second price as base units per hour (nearest). */
export const hourlyBaseUnits = (price: bigint, perHourUnits: bigint): bigint =>
  (price * perHourUnits + PRICE_SCALE / 2n) / PRICE_SCALE;

/** The maximum charge per second of a reservation, scaled (`LeaseMath.rate`). */
export const rate = (p: Prices, cpuMillis: number, memoryMiB: number, storageGiB: number): bigint =>
  p.baseRate + p.cpuPrice * BigInt(cpuMillis) + p.memoryPrice * BigInt(memoryMiB) + p.storagePrice * BigInt(storageGiB);

/** What `seconds` at `rate` cost, rounded up (`LeaseMath.costOf`). */
export const costOf = (seconds: bigint, r: bigint): bigint => (seconds * r + PRICE_SCALE - 1n) / PRICE_SCALE;

/** Seconds a balance lasts at `rate` (rounded down); undefined at rate zero. */
export const runwayOf = (balance: bigint, r: bigint): bigint | undefined =>
  r === 0n ? undefined : (balance * PRICE_SCALE) / r;

/** Seconds as people say them: "3 d 4 h", "2 h 5 min", "45 s". */
export function showDuration(seconds: bigint | number | undefined): string {
  if (seconds === undefined) return "unlimited";
  let s = Number(seconds);
  if (s <= 0) return "none";
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]] as const) {
    if (s >= size && parts.length < 2) {
      parts.push(`${Math.floor(s / size)} ${unit}`);
      s %= size;
    } else if (parts.length > 0) break;
  }
  return parts.join(" ");
}
