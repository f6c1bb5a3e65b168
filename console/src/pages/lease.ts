// A lease's page: where it runs (a link), its status, balance and runway, usage over time,
// charges pending / claimable / disputed, and what the tenant can do: top up, auto top-up,
// update the manifest, close, withdraw, dispute, cancel, read its logs.

import { type Log, keccak256 } from "viem";

import { costOf, formatAmount, parseAmount, showAmount, showDuration } from "../amounts";
import { type App, type Call, act as sendAndSay, ready, send } from "../app";
import { LEASE_STATUS, REJECT_REASON } from "../chain";
import { explain } from "../errors";
import { leaseEscrowAbi, tokenAbi } from "../generated/abi";
import { ManifestError, parseManifest } from "../manifest";
import { accessToken, logsUrl, signUpload, upload } from "../provider-api";
import { chart, fill, h, labelled, note, short, table } from "../ui";

type Args = Record<string, unknown>;
type ChainEvent = Log & { eventName: string; args: Args };

export async function leasesPage(app: App, page: HTMLElement): Promise<void> {
  const w = app.wallet;
  if (!w) {
    fill(page, note("info", "Connect your wallet to see your leases."));
    return;
  }
  const ids = await app.reader.leasesOf(w.account);
  const leases = await Promise.all(ids.map((id) => app.reader.lease(id)));
  const t = app.token;
  fill(
    page,
    h("section", {}, h("h2", {}, `Leases of ${short(w.account)}`),
      ids.length === 0
        ? h("p", {}, "No lease yet. ", h("a", { href: "#/" }, "Deploy a container."))
        : table(["Lease", "Provider", "Status", "Balance"], ids.map((id, i) => [
            h("a", { href: `#/lease/${id}` }, `Lease ${id}`),
            `#${leases[i]?.providerId}`,
            LEASE_STATUS[leases[i]?.status ?? 0] ?? "?",
            showAmount(leases[i]?.balance ?? 0n, t.decimals, t.symbol),
          ]), { "data-testid": "leases" })),
  );
}

export async function leasePage(app: App, page: HTMLElement, id: bigint, current: () => boolean): Promise<void> {
  const r = app.reader;
  const [stored, history, now, policy, charges] = await Promise.all([r.lease(id), r.history(id), r.now(), r.autoTopUp(id), r.charges(id)]);
  const lease = { ...stored, ...charges };
  if (!current()) return;
  if (lease.status === 0) {
    fill(page, note("error", `There is no lease ${id} on this chain.`));
    return;
  }
  const events = history as unknown as ChainEvent[];
  const t = app.token;
  const amount = (x: bigint) => showAmount(x, t.decimals, t.symbol);
  const status = LEASE_STATUS[lease.status] ?? "unknown";
  const confirmed = events.find((e) => e.eventName === "LeaseConfirmed");
  const rejected = events.find((e) => e.eventName === "LeaseRejected");
  const endpoint = confirmed ? String(confirmed.args.endpoint) : "";
  const providers = await r.providers();
  const provider = providers.find((p) => p.id === lease.providerId);
  const reports = events.filter((e) => e.eventName === "UsageReported");
  const runway = lease.depletionTime > now ? lease.depletionTime - now : 0n;
  const live = lease.status === 2 || lease.status === 7;
  const mine = app.wallet?.account.toLowerCase() === lease.tenant.toLowerCase();

  const act = (what: string, call: Call, done: string) => sendAndSay(app, what, call, done);
  const escrow = (functionName: string, args: readonly unknown[]): Call => ({ address: app.config.escrow, abi: leaseEscrowAbi, functionName, args });

  // top-up: approve when the allowance is short, then topUp
  const topUpAmount = h("input", { size: 10, value: "1", "data-testid": "topup-amount" }) as HTMLInputElement;
  const topUp = async (ev: Event) => {
    ev.preventDefault();
    let value: bigint;
    try {
      value = parseAmount("Top-up", topUpAmount.value, t.decimals);
      const w = ready(app, "topping up");
      if ((await r.balanceOf(t.address, w.account)) < value) {
        app.say("error", `Your balance is below ${amount(value)}; nothing was sent.`);
        return;
      }
      if ((await r.allowance(t.address, w.account)) < value) {
        await send(app, "approving the top-up", { address: t.address, abi: tokenAbi, functionName: "approve", args: [app.config.escrow, value] });
      }
    } catch (e) {
      app.say("error", explain("topping up", e).message);
      return;
    }
    await act("topping up", escrow("topUp", [id, value]), `Lease ${id} topped up by ${amount(value)}.`);
  };

  const sections: HTMLElement[] = [];
  sections.push(
    h("section", {},
      h("h2", { "data-testid": "lease-title" }, `Lease ${id} — ${status}`),
      rejected ? note("error", `The provider rejected this lease: ${REJECT_REASON[Number(rejected.args.reason)] ?? "unknown reason"}. Withdraw the deposit below.`) : null,
      h("dl", {},
        h("dt", {}, "Runs at"), h("dd", {}, endpoint ? h("a", { href: endpoint, target: "_blank", rel: "noopener", "data-testid": "endpoint" }, endpoint) : h("span", { class: "muted" }, lease.status === 1 ? "not yet: the provider is deploying it" : "—")),
        h("dt", {}, "Status"), h("dd", { "data-testid": "lease-status" }, status),
        h("dt", {}, "Provider"), h("dd", {}, h("a", { href: `#/provider/${lease.providerId}` }, `#${lease.providerId}`), provider ? ` ${provider.endpoint}` : ""),
        h("dt", {}, "Tenant"), h("dd", {}, lease.tenant),
        h("dt", {}, "Reservation"), h("dd", {}, `${lease.cpuMillis} millicores, ${lease.memoryMiB} MiB, ${lease.storageGiB} GiB`),
        h("dt", {}, "Balance"), h("dd", { "data-testid": "balance" }, amount(lease.balance)),
        h("dt", {}, "Runway"), h("dd", { "data-testid": "runway" }, live ? `${showDuration(runway)} at the maximum rate (until ${new Date(Number(lease.depletionTime) * 1000).toLocaleString()})` : "—"),
        h("dt", {}, "Maximum rate"), h("dd", {}, `${amount(costOf(3600n, lease.maxRate))} per hour`),
        h("dt", {}, "Charges"), h("dd", { "data-testid": "charges" }, `pending ${amount(lease.pending)} · claimable by the provider ${amount(lease.claimable)} · disputed ${amount(lease.disputed)}`),
        h("dt", {}, "Usage reports"), h("dd", {}, String(lease.reportCount)),
      )),
  );
  const points = reports.map((e) => ({ t: Number(e.args.to), v: Number(formatAmount(e.args.charge as bigint, t.decimals)) }));
  sections.push(
    h("section", {}, h("h2", {}, "Usage"),
      chart(`Charge of each usage report (${t.symbol})`, points, t.symbol),
      reports.length > 0
        ? table(["#", "Period", "CPU (millicore-s)", "Memory (MiB-s)", "Charge"], reports.slice(-20).reverse().map((e) => [
            String(e.args.sequence),
            `${new Date(Number(e.args.from) * 1000).toLocaleTimeString()} – ${new Date(Number(e.args.to) * 1000).toLocaleTimeString()}`,
            String(e.args.cpuUnits), String(e.args.memoryUnits), amount(e.args.charge as bigint),
          ]))
        : null),
  );

  if (mine) {
    const buttons: HTMLElement[] = [];
    const button = (label: string, testid: string, on: () => void, secondary = false) =>
      h("button", { "data-testid": testid, class: secondary ? "secondary" : undefined, onclick: on }, label);
    if (lease.status === 1 || live) {
      buttons.push(h("form", { onsubmit: topUp }, labelled(`Top up (${t.symbol})`, topUpAmount), h("button", { type: "submit", "data-testid": "topup" }, "Top up")));
    }
    if (live) {
      buttons.push(button("Close the lease", "close", () => {
        if (confirm(`Close lease ${id}? The provider stops it and sends a final report; then you withdraw the rest.`)) void act("closing the lease", escrow("closeLease", [id]), `Lease ${id} is closing.`);
      }, true));
    }
    if (lease.pending > 0n) buttons.push(button("Dispute pending charges", "dispute", () => void act("disputing", escrow("dispute", [id]), "The pending charges are frozen for the arbiter."), true));
    if (lease.status === 1) buttons.push(button("Cancel (after the accept timeout)", "cancel", () => void act("cancelling", escrow("cancelLease", [id]), `Lease ${id} is cancelled.`), true));
    if ([3, 5, 6].includes(lease.status) || (lease.status === 4 && lease.balance > 0n)) {
      buttons.push(button(`Withdraw ${amount(lease.balance)}`, "withdraw", () => void act("withdrawing", escrow("withdraw", [id]), `Withdrawn from lease ${id}.`)));
    }
    sections.push(h("section", {}, h("h2", {}, "Actions"), h("div", { class: "actions" }, buttons.length ? buttons : h("p", { class: "muted" }, "Nothing left to do: the lease is over and paid out."))));
    if (live) sections.push(autoTopUpSection(app, id, policy, act, escrow), updateSection(app, id, provider?.endpoint ?? ""), logsSection(app, id, provider?.endpoint ?? ""));
  } else {
    sections.push(note("info", app.wallet ? "This lease is not yours: only its tenant can change it." : "Connect the tenant's wallet to act on this lease."));
  }
  fill(page, sections);
}

function autoTopUpSection(app: App, id: bigint, p: { maxPerTopUp: bigint; maxTotal: bigint; expiresAt: number; triggerRunway: number; targetRunway: number; pulled: bigint }, act: (w: string, c: Call, d: string) => Promise<void>, escrow: (f: string, a: readonly unknown[]) => Call): HTMLElement {
  const t = app.token;
  const per = h("input", { size: 8, value: "5" }) as HTMLInputElement;
  const total = h("input", { size: 8, value: "50" }) as HTMLInputElement;
  const trigger = h("input", { size: 5, value: "2" }) as HTMLInputElement;
  const target = h("input", { size: 5, value: "24" }) as HTMLInputElement;
  const days = h("input", { size: 5, value: "30" }) as HTMLInputElement;
  const has = p.maxTotal > 0n;
  const set = async (ev: Event) => {
    ev.preventDefault();
    try {
      const args = [id, parseAmount("Most per top-up", per.value, t.decimals), parseAmount("Most in all", total.value, t.decimals),
        (await app.reader.now()) + BigInt(Math.round(Number(days.value) * 86400)), BigInt(Math.round(Number(trigger.value) * 3600)), BigInt(Math.round(Number(target.value) * 3600))];
      if (args.slice(3).some((x) => (x as bigint) <= 0n)) throw new Error("hours and days must be positive numbers");
      await act("setting the auto top-up", escrow("setAutoTopUp", args), "Auto top-up set. It pulls from your allowance to the escrow: approve enough for it.");
    } catch (e) {
      app.say("error", explain("setting the auto top-up", e).message);
    }
  };
  return h("section", {}, h("h2", {}, "Auto top-up"),
    h("p", { "data-testid": "autotopup" }, has
      ? `Active: when the runway falls under ${showDuration(p.triggerRunway)}, anyone may top it up back to ${showDuration(p.targetRunway)}, at most ${showAmount(p.maxPerTopUp, t.decimals, t.symbol)} a time and ${showAmount(p.maxTotal, t.decimals, t.symbol)} in all (${showAmount(p.pulled, t.decimals, t.symbol)} so far), until ${new Date(p.expiresAt * 1000).toLocaleDateString()}.`
      : "None: when the balance runs low the lease is suspended until you top it up."),
    h("form", { class: "actions", onsubmit: set },
      labelled(`Most per top-up (${t.symbol})`, per), labelled(`Most in all (${t.symbol})`, total), labelled("When runway under (hours)", trigger), labelled("Back to (hours)", target), labelled("For (days)", days),
      h("button", { type: "submit", "data-testid": "autotopup-set" }, has ? "Replace policy" : "Set policy")),
    has ? h("button", { class: "secondary", "data-testid": "autotopup-clear", onclick: () => void act("clearing the auto top-up", escrow("clearAutoTopUp", [id]), "Auto top-up removed.") }, "Remove policy") : null);
}

function updateSection(app: App, id: bigint, endpoint: string): HTMLElement {
  const text = h("textarea", { spellcheck: "false", placeholder: "The new manifest (same reservation)", "data-testid": "update-manifest" }) as HTMLTextAreaElement;
  const said = h("div", { "data-testid": "update-said" });
  const go = async () => {
    try {
      parseManifest(text.value);
    } catch (e) {
      const m = e as ManifestError;
      fill(said, note("error", m.field ? `${m.field}: ${m.reason}` : m.message));
      return;
    }
    const bytes = new TextEncoder().encode(text.value);
    try {
      await send(app, "committing the new manifest", { address: app.config.escrow, abi: leaseEscrowAbi, functionName: "updateManifest", args: [id, keccak256(bytes), ""] });
      const w = ready(app, "signing the manifest upload");
      const up = await upload(endpoint, id, bytes, await signUpload(app, w, id, bytes));
      fill(said, note(up.accepted ? "ok" : "error", up.accepted ? "The provider has the new manifest and rolls it out in place." : `The provider refuses it: ${up.reason}`));
    } catch (e) {
      fill(said, note("error", explain("updating the manifest", e).message));
    }
  };
  return h("section", {}, h("h2", {}, "Update the manifest"), text, h("button", { onclick: () => void go(), "data-testid": "update" }, "Commit and deliver"), said);
}

function logsSection(app: App, id: bigint, endpoint: string): HTMLElement {
  const out = h("div", { class: "logs", hidden: true, "data-testid": "logs" });
  let source: EventSource | undefined;
  const open = async () => {
    try {
      const w = ready(app, "reading logs");
      const token = await accessToken(app, w, id, "logs");
      source?.close();
      out.hidden = false;
      out.textContent = "";
      source = new EventSource(logsUrl(endpoint, id, token));
      source.addEventListener("line", (ev) => {
        const line = JSON.parse((ev as MessageEvent).data) as { time: string; stream: string; line: string };
        out.append(`${line.time} ${line.stream === "stderr" ? "! " : ""}${line.line}\n`);
        while (out.childNodes.length > 2000) out.firstChild?.remove();
        out.scrollTop = out.scrollHeight;
      });
      source.addEventListener("end", (ev) => {
        out.append(`— stream ended: ${(ev as MessageEvent).data}\n`);
        source?.close();
      });
      source.onerror = () => out.append("— connection lost; the browser retries\n");
    } catch (e) {
      app.say("error", explain("opening the logs", e).message);
    }
  };
  return h("section", {}, h("h2", {}, "Logs"), h("button", { class: "secondary", onclick: () => void open(), "data-testid": "open-logs" }, "Show logs (signs a 10-minute token)"), out);
}
