// Resource quantities in Kubernetes' notation, read exactly as berth-protocol reads them
// (protocol/src/manifest/quantity.rs): CPU into millicores, sizes into bytes, durations into
// seconds. Sizes are bigints: a u64 of bytes does not fit a JS number.

const U32_MAX = 0xffff_ffffn;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** `500m`, `1`, `1.5`, `0.25` → millicores; an error message otherwise. */
export function cpuMillis(text: string): number | string {
  const t = text.trim();
  const bad = `\`${text}\` is not a CPU quantity (e.g. 500m, 1, 1.5)`;
  let millis: bigint;
  if (t.endsWith("m")) {
    const digits = t.slice(0, -1);
    if (!/^\+?[0-9]+$/.test(digits)) return bad;
    millis = BigInt(digits);
    if (millis > U64_MAX) return bad;
  } else {
    const m = /^([0-9]*)(?:\.([0-9]*))?$/.exec(t);
    if (!m) return bad;
    const whole = m[1] ?? "";
    const frac = m[2] ?? "";
    if ((whole === "" && frac === "") || frac.length > 3) return bad;
    millis = BigInt(whole || "0") * 1000n + BigInt((frac + "000").slice(0, 3));
    if (millis > U64_MAX) return bad;
  }
  if (millis === 0n) return "CPU must be at least 1m";
  if (millis > U32_MAX) return `\`${text}\` is too large`;
  return Number(millis);
}

const UNITS: Record<string, bigint> = {
  "": 1n,
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  k: 1_000n,
  K: 1_000n,
  M: 1_000_000n,
  G: 1_000_000_000n,
  T: 1_000_000_000_000n,
};

/** `256Mi`, `1Gi`, `512M`, `1048576` → bytes; an error message otherwise. */
export function bytes(text: string): bigint | string {
  const t = text.trim();
  const bad = `\`${text}\` is not a size (e.g. 256Mi, 1Gi, 500M)`;
  const m = /^([0-9]*)(.*)$/s.exec(t);
  const digits = m?.[1] ?? "";
  const suffix = m?.[2] ?? "";
  if (digits === "") return bad;
  const n = BigInt(digits);
  if (n > U64_MAX) return bad;
  const unit = Object.hasOwn(UNITS, suffix) ? UNITS[suffix] : undefined;
  if (unit === undefined) return bad;
  const total = n * unit;
  if (total > U64_MAX) return `\`${text}\` is too large`;
  if (total === 0n) return "a size must be above zero";
  return total;
}

/** `30s`, `5m`, `2h` → seconds; an error message otherwise. */
export function seconds(text: string): bigint | string {
  const t = text.trim();
  const bad = `\`${text}\` is not a duration (e.g. 30s, 5m, 1h)`;
  const m = /^([0-9]*)([smh])$/.exec(t);
  const digits = m?.[1] ?? "";
  if (!m || digits === "") return bad;
  const n = BigInt(digits);
  if (n > U64_MAX) return bad;
  const total = n * { s: 1n, m: 60n, h: 3600n }[m[2] as "s" | "m" | "h"];
  if (total > U64_MAX) return `\`${text}\` is too long`;
  return total;
}

/** Bytes rounded up to whole MiB, the unit of lease reservations. */
export const mibCeil = (b: bigint): bigint => (b + (1n << 20n) - 1n) >> 20n;
/** Bytes rounded up to whole GiB. */
export const gibCeil = (b: bigint): bigint => (b + (1n << 30n) - 1n) >> 30n;
