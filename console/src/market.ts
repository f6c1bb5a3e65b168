// Which providers can take a reservation, the cheapest first, and for each one that cannot,
// the reason (as `berth providers` says it).

import { costOf, rate, showAmount } from "./amounts";
import type { Offer, Token } from "./chain";
import type { Totals } from "./manifest";

export interface Verdict { offer: Offer; hourly: bigint; rate: bigint; excluded?: string }

export function exclusion(o: Offer, need: Totals, token: Address, wanted: [string, string][]): string | undefined {
  if (o.status !== "active") return `${o.status} (takes no new leases)`;
  if (o.token.toLowerCase() !== token.toLowerCase()) return "paid in another token than the console's";
  const rows: [string, string, number, number][] = [
    ["CPU", "millicores", o.free[0], need.cpuMillis],
    ["memory", "MiB", o.free[1], need.memoryMiB],
    ["storage", "GiB", o.free[2], need.storageGiB],
  ];
  for (const [name, unit, free, n] of rows) {
    if (free < n) return `free ${name} ${free} ${unit} < ${n} needed`;
  }
  for (const [k, v] of wanted) {
    const have = o.attributes.find(([key]) => key === k);
    if (!have) return `no attribute ${k} (wanted ${k}=${v})`;
    if (have[1] !== v) return `attribute ${k}=${have[1]}, wanted ${k}=${v}`;
  }
  return undefined;
}

/** Every offer judged for `need`: fitting ones first, cheapest first; then the excluded. */
export function judge(offers: Offer[], need: Totals, token: Address, wanted: [string, string][] = []): Verdict[] {
  const verdicts = offers.map((offer) => {
    const r = rate(offer.prices, need.cpuMillis, need.memoryMiB, need.storageGiB);
    return { offer, rate: r, hourly: costOf(3600n, r), excluded: exclusion(offer, need, token, wanted) };
  });
  return verdicts.sort((a, b) => {
    if (!a.excluded !== !b.excluded) return a.excluded ? 1 : -1;
    if (a.hourly !== b.hourly) return a.hourly < b.hourly ? -1 : 1;
    return a.offer.id - b.offer.id;
  });
}

export const hourlyText = (v: Verdict, t: Token) => `${showAmount(v.hourly, t.decimals, t.symbol)} / h`;

type Address = `0x${string}`;
