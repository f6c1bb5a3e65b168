// Providers: the market as a table; for a provider's owner, registering one, its leases and
// revenue, prices and capacity, pause and resume, and claiming matured charges.

import { type Address, getAddress, isAddress, zeroAddress } from "viem";

import { HOURLY_UNITS, formatAmount, hourlyBaseUnits, parseAmount, priceFromHourly, showAmount } from "../amounts";
import { type App, type Call, act as sendAndSay, send } from "../app";
import { type Offer, LEASE_STATUS } from "../chain";
import { explain } from "../errors";
import { leaseEscrowAbi, providerRegistryAbi, tokenAbi } from "../generated/abi";
import { fill, h, labelled, note, short, table } from "../ui";

const PRICE_NAMES = ["base (per lease-hour)", "CPU (per core-hour)", "memory (per GiB-hour)", "storage (per GiB-hour)"] as const;

const hourlyPrices = (app: App, o: Offer): string[] => {
  const p = [o.prices.baseRate, o.prices.cpuPrice, o.prices.memoryPrice, o.prices.storagePrice];
  return p.map((x, i) => showAmount(hourlyBaseUnits(x, HOURLY_UNITS[i] as bigint), app.token.decimals, app.token.symbol));
};

export async function providersPage(app: App, page: HTMLElement): Promise<void> {
  const offers = await app.reader.providers();
  fill(page, h("section", {}, h("h2", {}, "Providers"),
    offers.length === 0 ? note("info", "No provider is registered yet.") :
    table(["Provider", "Status", "Endpoint", "Attributes", "Free / total CPU (m)", "Memory (MiB)", "Storage (GiB)", "Prices per hour", "Leases"], offers.map((o) => [
      h("a", { href: `#/provider/${o.id}` }, `#${o.id}`), o.status, o.endpoint,
      o.attributes.map(([k, v]) => `${k}=${v}`).join(", ") || "—",
      `${o.free[0]} / ${o.capacity[0]}`, `${o.free[1]} / ${o.capacity[1]}`, `${o.free[2]} / ${o.capacity[2]}`,
      hourlyPrices(app, o).map((p, i) => h("div", {}, `${PRICE_NAMES[i]}: ${p}`)),
      String(o.activeLeases),
    ]), { "data-testid": "market" })));
}

export async function providerPage(app: App, page: HTMLElement, id: number | undefined, current: () => boolean): Promise<void> {
  const offers = await app.reader.providers();
  if (!current()) return;
  const act = (what: string, call: Call, done: string) => sendAndSay(app, what, call, done);
  if (id === undefined) {
    const w = app.wallet;
    const owned = w ? offers.filter((o) => o.owner.toLowerCase() === w.account.toLowerCase()) : [];
    fill(page,
      h("section", {}, h("h2", {}, "Your providers"),
        !w ? note("info", "Connect the provider owner's wallet.") : owned.length === 0 ? h("p", { class: "muted" }, "This account owns no provider.") :
        h("ul", {}, owned.map((o) => h("li", {}, h("a", { href: `#/provider/${o.id}` }, `Provider #${o.id}`), ` — ${o.status}, ${o.endpoint}`)))),
      registerSection(app, act));
    return;
  }
  const o = offers.find((x) => x.id === id);
  if (!o) {
    fill(page, note("error", `There is no provider ${id}.`));
    return;
  }
  const { opened, claimed } = await app.reader.providerLeases(id);
  const ids = opened.map((l) => l.args.leaseId as bigint);
  const leases = await Promise.all(ids.map(async (l) => ({ ...(await app.reader.lease(l)), ...(await app.reader.charges(l)) })));
  const t = app.token;
  const amount = (x: bigint) => showAmount(x, t.decimals, t.symbol);
  const revenue = claimed.reduce((s, l) => s + (l.args.amount as bigint), 0n);
  const claimable = leases.reduce((s, l) => s + l.claimable, 0n);
  const pending = leases.reduce((s, l) => s + l.pending, 0n);
  const disputed = leases.reduce((s, l) => s + l.disputed, 0n);
  const owner = app.wallet?.account.toLowerCase() === o.owner.toLowerCase();
  const registry = (functionName: string, args: readonly unknown[]): Call => ({ address: app.config.registry, abi: providerRegistryAbi, functionName, args });
  const withClaimable = ids.filter((_, i) => (leases[i]?.claimable ?? 0n) > 0n);
  const sections: HTMLElement[] = [
    h("section", {}, h("h2", {}, `Provider #${id} — ${o.status}`),
      h("dl", {},
        h("dt", {}, "Endpoint"), h("dd", {}, o.endpoint),
        h("dt", {}, "Owner / operator"), h("dd", {}, `${o.owner} / ${o.operator}`),
        h("dt", {}, "Attributes"), h("dd", {}, o.attributes.map(([k, v]) => `${k}=${v}`).join(", ") || "—"),
        h("dt", {}, "Capacity free / total"), h("dd", {}, `${o.free[0]} / ${o.capacity[0]} millicores, ${o.free[1]} / ${o.capacity[1]} MiB, ${o.free[2]} / ${o.capacity[2]} GiB`),
        h("dt", {}, "Prices per hour"), h("dd", {}, hourlyPrices(app, o).map((p, i) => `${PRICE_NAMES[i]} ${p}`).join(" · ")),
        h("dt", {}, "Revenue claimed"), h("dd", { "data-testid": "revenue" }, amount(revenue)),
        h("dt", {}, "Claimable now / pending / disputed"), h("dd", {}, `${amount(claimable)} / ${amount(pending)} / ${amount(disputed)}`))),
    h("section", {}, h("h2", {}, `Leases (${ids.length})`),
      ids.length === 0 ? h("p", { class: "muted" }, "No lease yet.") :
      table(["Lease", "Tenant", "Status", "Balance", "Claimable", "Pending"], ids.map((l, i) => [
        h("a", { href: `#/lease/${l}` }, `Lease ${l}`), short(leases[i]?.tenant ?? ""), LEASE_STATUS[leases[i]?.status ?? 0] ?? "?",
        amount(leases[i]?.balance ?? 0n), amount(leases[i]?.claimable ?? 0n), amount(leases[i]?.pending ?? 0n),
      ]))),
  ];
  if (owner) {
    const prices = [o.prices.baseRate, o.prices.cpuPrice, o.prices.memoryPrice, o.prices.storagePrice].map((p, i) => h("input", { size: 8, value: formatAmount(hourlyBaseUnits(p, HOURLY_UNITS[i] as bigint), t.decimals) }) as HTMLInputElement);
    const cap = o.capacity.map((c) => h("input", { size: 7, value: String(c) }) as HTMLInputElement);
    sections.push(h("section", {}, h("h2", {}, "Manage"),
      h("div", { class: "actions" },
        o.status === "active" ? h("button", { class: "secondary", "data-testid": "pause", onclick: () => void act("pausing", registry("pause", [BigInt(id)]), "Paused: no new leases; running ones go on.") }, "Pause new leases") : null,
        o.status === "paused" ? h("button", { "data-testid": "unpause", onclick: () => void act("resuming", registry("unpause", [BigInt(id)]), "Taking new leases again.") }, "Resume taking leases") : null,
        h("button", { disabled: withClaimable.length === 0, "data-testid": "claim", onclick: () => void act("claiming", { address: app.config.escrow, abi: leaseEscrowAbi, functionName: "claimMany", args: [withClaimable] }, `Claimed ${amount(claimable)} from ${withClaimable.length} lease${withClaimable.length === 1 ? "" : "s"}.`) }, `Claim ${amount(claimable)}`)),
      h("form", { class: "actions", onsubmit: (ev: Event) => {
        ev.preventDefault();
        try {
          const scaled = prices.map((p, i) => priceFromHourly(`Price ${PRICE_NAMES[i]}`, p.value, t.decimals, HOURLY_UNITS[i] as bigint));
          void act("publishing prices", registry("updatePrices", [BigInt(id), ...scaled]), "New prices published; running leases keep theirs.");
        } catch (e) { app.say("error", (e as Error).message); }
      } }, prices.map((p, i) => labelled(`${PRICE_NAMES[i]} (${t.symbol})`, p)), h("button", { type: "submit" }, "Publish prices")),
      h("form", { class: "actions", onsubmit: (ev: Event) => {
        ev.preventDefault();
        const v = cap.map((c) => Number(c.value));
        if (v.some((x) => !Number.isInteger(x) || x < 0 || x > 0xffffffff)) { app.say("error", "Capacity: whole numbers."); return; }
        void act("updating capacity", registry("updateCapacity", [BigInt(id), ...v]), "Capacity updated.");
      } }, labelled("CPU (millicores)", cap[0] as HTMLElement), labelled("Memory (MiB)", cap[1] as HTMLElement), labelled("Storage (GiB)", cap[2] as HTMLElement), h("button", { type: "submit" }, "Update capacity"))));
  }
  fill(page, sections);
}

function registerSection(app: App, act: (w: string, c: Call, d: string) => Promise<void>): HTMLElement {
  const t = app.token;
  const endpoint = h("input", { size: 40, placeholder: "https://provider.example.org" }) as HTMLInputElement;
  const operator = h("input", { size: 44, placeholder: "0x… the keeper's key (empty: this account)" }) as HTMLInputElement;
  const attributes = h("input", { size: 30, placeholder: "region=eu-west,tier=standard" }) as HTMLInputElement;
  const cap = ["4000", "8192", "100"].map((v) => h("input", { size: 7, value: v }) as HTMLInputElement);
  const prices = ["0.01", "0.02", "0.01", "0"].map((v) => h("input", { size: 7, value: v }) as HTMLInputElement);
  const stake = h("input", { size: 8, value: "0" }) as HTMLInputElement;
  const submit = async (ev: Event) => {
    ev.preventDefault();
    try {
      const w = app.wallet;
      if (!w) throw new Error("Connect the owner's wallet first.");
      if (!/^https?:\/\/\S+$/.test(endpoint.value)) throw new Error("Endpoint: an http(s) URL where the keeper's API answers.");
      const op = operator.value.trim() === "" ? w.account : operator.value.trim();
      if (!isAddress(op)) throw new Error("Operator: an address (0x and 40 hex digits).");
      const capacity = cap.map((c) => Number(c.value));
      if (capacity.some((x) => !Number.isInteger(x) || x < 0 || x > 0xffffffff)) throw new Error("Capacity: whole numbers.");
      const scaled = prices.map((p, i) => priceFromHourly(`Price ${PRICE_NAMES[i]}`, p.value, t.decimals, HOURLY_UNITS[i] as bigint));
      const stakeUnits = parseAmount("Stake", stake.value, t.decimals);
      if (stakeUnits > 0n) {
        await send(app, "approving the stake", { address: t.address, abi: tokenAbi, functionName: "approve", args: [app.config.registry, stakeUnits] });
      }
      await act("registering the provider", {
        address: app.config.registry, abi: providerRegistryAbi, functionName: "register",
        args: [getAddress(op) as Address, t.address ?? zeroAddress, endpoint.value, attributes.value, capacity, scaled, stakeUnits],
      }, "Provider registered. Start its keeper with the operator key.");
    } catch (e) {
      app.say("error", explain("registering the provider", e).message);
    }
  };
  return h("section", {}, h("h2", {}, "Register a provider"),
    h("form", { onsubmit: submit },
      labelled("Endpoint", endpoint, "The keeper's API (tenants upload manifests there)"),
      labelled("Operator", operator), labelled("Attributes", attributes),
      h("div", { class: "actions" }, labelled("CPU (millicores)", cap[0] as HTMLElement), labelled("Memory (MiB)", cap[1] as HTMLElement), labelled("Storage (GiB)", cap[2] as HTMLElement)),
      h("div", { class: "actions" }, prices.map((p, i) => labelled(`${PRICE_NAMES[i]} (${t.symbol})`, p))),
      labelled(`Stake (${t.symbol})`, stake),
      h("button", { type: "submit" }, "Register")));
}
