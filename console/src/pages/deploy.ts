// Buy a container: a manifest (template, file or paste) checked as the keeper checks it, the
// providers that can run it (and why the others cannot), a deposit by hours or amount with
// its runway, then one permit signature and one transaction, the signed upload, and live
// progress until the provider confirms or rejects.

import helloManifest from "../../../examples/hello/manifest.yaml?raw";
import { type Hex, keccak256, parseEventLogs, parseSignature, signatureToCompactSignature } from "viem";

import { formatAmount, costOf, parseAmount, runwayOf, showAmount, showDuration } from "../amounts";
import { type App, mined, pendingTx, ready, send } from "../app";
import { type Offer, REJECT_REASON, parseAttributes } from "../chain";
import { Explained, explain } from "../errors";
import { leaseEscrowAbi, tokenAbi } from "../generated/abi";
import { ManifestError, type Totals, parseManifest, totals } from "../manifest";
import { type Verdict, hourlyText, judge } from "../market";
import { signUpload, upload } from "../provider-api";
import { fill, h, labelled, note, short } from "../ui";
import type { Connected } from "../wallet";

const TEMPLATES: Record<string, string> = { "Hello web page (examples/hello)": helloManifest };
const DRAFT = "berth.draft";
const INFLIGHT = "berth.deploy";

/** A deployment between its first signature and the provider's answer, kept across reloads. */
interface InFlight { text: string; providerId: number; endpoint: string; hash?: Hex; leaseId?: string; uploaded?: boolean }

export function deployPage(app: App, page: HTMLElement): void {
  const text = h("textarea", { id: "manifest", spellcheck: "false", "data-testid": "manifest" }) as HTMLTextAreaElement;
  text.value = localStorage.getItem(DRAFT) ?? helloManifest;
  const verdict = h("div", { "data-testid": "manifest-verdict" });
  const template = h("select", { "data-testid": "template" }, h("option", { value: "" }, "Start from a template…"), Object.keys(TEMPLATES).map((k) => h("option", { value: k }, k)));
  const file = h("input", { type: "file", accept: ".yaml,.yml,text/yaml", "data-testid": "manifest-file" }) as HTMLInputElement;
  const attrs = h("input", { placeholder: "region=eu-west,tier=standard", "data-testid": "attributes" }) as HTMLInputElement;
  const providers = h("div", { "data-testid": "providers" });
  const by = h("select", { "data-testid": "deposit-by" }, h("option", { value: "hours" }, "hours of runway"), h("option", { value: "amount" }, `an amount of ${app.token.symbol}`)) as HTMLSelectElement;
  const amount = h("input", { value: "24", size: 10, "data-testid": "deposit" }) as HTMLInputElement;
  const cost = h("div", { "data-testid": "deposit-verdict" });
  const go = h("button", { "data-testid": "deploy" }, "Deploy") as HTMLButtonElement;
  const progress = h("section", { hidden: true, "data-testid": "progress" });

  let offers: Offer[] = [];
  let need: Totals | undefined;
  let chosen: Verdict | undefined;
  let minRunway = 0n;
  let balance: bigint | undefined;

  const check = () => {
    localStorage.setItem(DRAFT, text.value);
    try {
      need = totals(parseManifest(text.value));
      fill(verdict, note("ok", `Valid. Reserves ${need.cpuMillis} millicores, ${need.memoryMiB} MiB memory, ${need.storageGiB} GiB storage.`));
    } catch (e) {
      need = undefined;
      const m = e instanceof ManifestError ? e : undefined;
      fill(verdict, note("error", m ? (m.field ? `${m.field}: ${m.reason}` : `Not a manifest: ${m.reason}`) : String(e)));
    }
    market();
  };

  const market = () => {
    if (!need) {
      fill(providers, h("p", { class: "muted" }, "Fix the manifest to see which providers can run it."));
      chosen = undefined;
      deposit();
      return;
    }
    const verdicts = judge(offers, need, app.config.paymentToken, parseAttributes(attrs.value));
    const keep = chosen && verdicts.find((v) => v.offer.id === chosen?.offer.id && !v.excluded);
    chosen = keep ?? verdicts.find((v) => !v.excluded);
    if (verdicts.length === 0) {
      fill(providers, note("info", "No provider is registered on this chain yet."));
    } else {
      fill(
        providers,
        h("table", {},
          h("thead", {}, h("tr", {}, ["", "Provider", "Endpoint", "Attributes", "Free CPU / memory / storage", "Price for this manifest", "Fits?"].map((t) => h("th", {}, t)))),
          h("tbody", {}, verdicts.map((v) => {
            const radio = h("input", { type: "radio", name: "provider", value: v.offer.id, disabled: Boolean(v.excluded), checked: chosen?.offer.id === v.offer.id, "data-testid": `provider-${v.offer.id}`, onchange: () => { chosen = v; deposit(); } });
            return h("tr", { class: v.excluded ? "excluded" : undefined },
              h("td", {}, radio),
              h("td", {}, `#${v.offer.id}`),
              h("td", {}, v.offer.endpoint),
              h("td", {}, v.offer.attributes.map(([k, x]) => `${k}=${x}`).join(", ") || "—"),
              h("td", {}, `${v.offer.free[0]} m / ${v.offer.free[1]} MiB / ${v.offer.free[2]} GiB`),
              h("td", {}, hourlyText(v, app.token)),
              h("td", { "data-testid": `fit-${v.offer.id}` }, v.excluded ? `No: ${v.excluded}` : "Yes"));
          }))),
      );
    }
    deposit();
  };

  /** The deposit in base units, or a sentence saying why there is none. */
  const depositOf = (): bigint | string => {
    if (!chosen) return "Choose a provider first.";
    try {
      if (by.value === "hours") {
        const hours = Number(amount.value);
        if (!Number.isFinite(hours) || hours <= 0 || hours > 24 * 3650) return "Hours of runway: a positive number (at most ten years).";
        return costOf(BigInt(Math.ceil(hours * 3600)), chosen.rate);
      }
      return parseAmount("Deposit", amount.value, app.token.decimals);
    } catch (e) {
      return (e as Error).message;
    }
  };

  const deposit = () => {
    const d = depositOf();
    go.disabled = typeof d === "string" || !need;
    if (typeof d === "string" || !chosen) {
      fill(cost, note("info", typeof d === "string" ? d : ""));
      return;
    }
    const t = app.token;
    const required = costOf(minRunway, chosen.rate);
    const runway = runwayOf(d, chosen.rate);
    const lines = [
      `Deposit ${showAmount(d, t.decimals, t.symbol)}: runway ${showDuration(runway)} at this lease's maximum rate of ${hourlyText(chosen, t)} (you pay for what you use, never above it).${balance === undefined ? "" : ` Your balance: ${showAmount(balance, t.decimals, t.symbol)}.`}`,
    ];
    if (balance !== undefined && balance < d) {
      go.disabled = true;
      fill(cost, note("error", `${lines[0]} That is more than you have.`));
      return;
    }
    if (d < required) {
      go.disabled = true;
      fill(cost, note("error", `${lines[0]} The escrow needs at least ${showAmount(required, t.decimals, t.symbol)} (${showDuration(minRunway)} of runway) to open a lease.`));
      return;
    }
    fill(cost, note("info", lines[0] ?? ""));
  };

  text.addEventListener("input", check);
  attrs.addEventListener("input", market);
  by.addEventListener("change", () => {
    // the same 24 hours either way, as hours or as what they cost with the chosen provider
    amount.value = by.value === "hours" || !chosen ? "24" : formatAmount(costOf(24n * 3600n, chosen.rate), app.token.decimals);
    deposit();
  });
  amount.addEventListener("input", deposit);
  template.addEventListener("change", () => {
    const t = TEMPLATES[(template as HTMLSelectElement).value];
    if (t) { text.value = t; check(); }
  });
  file.addEventListener("change", async () => {
    const f = file.files?.[0];
    if (!f) return;
    if (f.size > 64 * 1024) { fill(verdict, note("error", `${f.name} is ${f.size} bytes; a manifest is at most 65,536.`)); return; }
    text.value = await f.text();
    check();
  });
  go.addEventListener("click", async () => {
    const d = depositOf();
    if (!chosen || !need || typeof d !== "bigint") return;
    go.disabled = true;
    const flight: InFlight = { text: text.value, providerId: chosen.offer.id, endpoint: chosen.offer.endpoint };
    try {
      await openAndDeliver(app, progress, flight, { verdict: chosen, need, deposit: d });
    } catch (e) {
      app.say("error", explain("deploying", e).message);
    } finally {
      go.disabled = false;
    }
  });

  const resume = inFlight();
  fill(
    page,
    resume ? h("section", { "data-testid": "resume" },
      note("info", `A deployment was in progress when this page was closed${resume.leaseId ? ` (lease ${resume.leaseId})` : resume.hash ? ` (transaction ${resume.hash.slice(0, 10)}…)` : ""}.`),
      h("button", { onclick: () => void continueFlight(app, progress, resume).catch((e) => app.say("error", explain("deploying", e).message)) }, "Continue it"), " ",
      h("button", { class: "secondary", onclick: () => { localStorage.removeItem(INFLIGHT); app.refresh(); } }, "Forget it")) : null,
    h("section", {}, h("h2", {}, "1. What to run"),
      h("div", { class: "actions" }, template, labelled("or a manifest file", file)),
      labelled("Manifest (YAML, see docs/manifest.md)", text), verdict),
    h("section", {}, h("h2", {}, "2. Who runs it"), labelled("Required provider attributes (optional)", attrs, "key=value pairs, comma-separated"), providers),
    h("section", {}, h("h2", {}, "3. How long"), h("div", { class: "actions" }, labelled("Deposit by", by), labelled("Value", amount)), cost,
      h("p", { class: "muted" }, "One signature (a permit for exactly this deposit) and one transaction open and fund the lease; then you sign the manifest for the provider."),
      go),
    progress,
  );
  app.reader.providers().then((o) => { offers = o; market(); }).catch((e) => fill(providers, note("error", explain("reading the providers", e).message)));
  app.reader.minRunway().then((r) => { minRunway = r > BigInt(app.config.minOpenRunway) ? r : BigInt(app.config.minOpenRunway); deposit(); }).catch(() => undefined);
  if (app.wallet) {
    app.reader.balanceOf(app.token.address, app.wallet.account).then((b) => { balance = b; deposit(); }).catch(() => undefined);
  }
  check();
}

const inFlight = (): InFlight | undefined => {
  try {
    return JSON.parse(localStorage.getItem(INFLIGHT) ?? "null") ?? undefined;
  } catch {
    return undefined;
  }
};
const keep = (f: InFlight) => localStorage.setItem(INFLIGHT, JSON.stringify(f));

/** The progress list: each step's state and what it said. */
class Steps {
  private items: HTMLLIElement[];
  constructor(el: HTMLElement, names: string[]) {
    this.items = names.map((n, i) => h("li", { "data-testid": `step-${i}` }, n));
    el.hidden = false;
    fill(el, h("h2", {}, "Progress"), h("ol", { class: "steps" }, this.items));
  }
  now(i: number, text?: string) { this.set(i, "now", text); }
  done(i: number, text?: string) { this.set(i, "done", text); }
  failed(i: number, text: string) { this.set(i, "failed", text); }
  private set(i: number, cls: string, text?: string) {
    const li = this.items[i];
    if (!li) return;
    li.className = cls;
    if (text) li.dataset.said = text;
    const said = li.querySelector("small") ?? h("small", { class: "muted" });
    said.textContent = text ? ` — ${text}` : "";
    li.append(said);
  }
}

const STEP_NAMES = [
  "Sign the spending permit (no transaction)",
  "Open and fund the lease (one transaction)",
  "Sign the manifest for the provider",
  "Deliver the manifest to the provider",
  "Provider deploys and confirms on chain",
];

interface Order { verdict: Verdict; need: Totals; deposit: bigint }

async function openAndDeliver(app: App, el: HTMLElement, flight: InFlight, o: Order): Promise<void> {
  const steps = new Steps(el, STEP_NAMES);
  let i = 0;
  try {
    const w = ready(app, "opening a lease");
    const t = app.token;
    const balance = await app.reader.balanceOf(t.address, w.account);
    if (balance < o.deposit) {
      throw new Explained(`Your balance is ${showAmount(balance, t.decimals, t.symbol)}; the deposit is ${showAmount(o.deposit, t.decimals, t.symbol)}. Nothing was signed or sent.`, "funds");
    }
    const bytes = new TextEncoder().encode(flight.text);
    const hash = keccak256(bytes);
    keep(flight);
    steps.now(i);
    const permit = await signPermit(app, w, o.deposit);
    const base = [BigInt(o.verdict.offer.id), o.need.cpuMillis, o.need.memoryMiB, o.need.storageGiB, hash, "", o.deposit, o.verdict.rate] as const;
    let receipt;
    if (permit) {
      steps.done(i, "signed");
      i = 1;
      steps.now(i);
      receipt = await send(app, "opening the lease", { address: app.config.escrow, abi: leaseEscrowAbi, functionName: "openLeaseWithPermit", args: [...base, permit.deadline, permit.r, permit.vs] });
    } else {
      steps.done(i, "this token or wallet has no permits: approving in a transaction instead");
      if ((await app.reader.allowance(t.address, w.account)) < o.deposit) {
        await send(app, "approving the deposit", { address: t.address, abi: tokenAbi, functionName: "approve", args: [app.config.escrow, o.deposit] });
      }
      i = 1;
      steps.now(i);
      receipt = await send(app, "opening the lease", { address: app.config.escrow, abi: leaseEscrowAbi, functionName: "openLease", args: base });
    }
    const opened = parseEventLogs({ abi: leaseEscrowAbi, eventName: "LeaseOpened", logs: receipt.logs })[0];
    if (!opened) throw new Explained("The transaction was mined without opening a lease.", "other");
    flight.leaseId = opened.args.leaseId.toString();
    keep(flight);
    steps.done(i, `lease ${flight.leaseId} opened in transaction ${short(receipt.transactionHash)}`);
    await deliver(app, steps, flight);
  } catch (e) {
    const x = explain("deploying", e);
    // nothing to pick up again unless the opening transaction is out there
    if (!flight.leaseId && pendingTx()?.what !== "opening the lease") localStorage.removeItem(INFLIGHT);
    steps.failed(i, x.message);
    app.say("error", x.message);
  }
}

async function continueFlight(app: App, el: HTMLElement, flight: InFlight): Promise<void> {
  const steps = new Steps(el, STEP_NAMES);
  const pending = pendingTx();
  const hash = flight.hash ?? (pending?.what === "opening the lease" ? pending.hash : undefined);
  if (!flight.leaseId && hash) {
    const r = await mined(app, "opening the lease", hash);
    const opened = parseEventLogs({ abi: leaseEscrowAbi, eventName: "LeaseOpened", logs: r.logs })[0];
    if (!opened) throw new Explained("That transaction opened no lease.", "other");
    flight.leaseId = opened.args.leaseId.toString();
    keep(flight);
  }
  if (!flight.leaseId) {
    localStorage.removeItem(INFLIGHT);
    throw new Explained("The deployment stopped before a lease was opened; nothing is on chain. Start again.", "other");
  }
  steps.done(0);
  steps.done(1, `lease ${flight.leaseId}`);
  await deliver(app, steps, flight);
}

/** Signs and uploads the manifest (unless already delivered), then waits for the provider's answer. */
async function deliver(app: App, steps: Steps, flight: InFlight): Promise<void> {
  const id = BigInt(flight.leaseId as string);
  let i = 2;
  try {
    if (!flight.uploaded) {
      const w = ready(app, "signing the manifest upload");
      const bytes = new TextEncoder().encode(flight.text);
      steps.now(i);
      const sig = await signUpload(app, w, id, bytes);
      steps.done(i, "signed");
      i = 3;
      steps.now(i);
      const said = await upload(flight.endpoint, id, bytes, sig);
      flight.uploaded = true;
      keep(flight);
      steps.done(i, said.accepted ? "the provider accepted it" : `the provider refuses it (${said.reason}); it will reject the lease on chain`);
    } else {
      steps.done(2);
      steps.done(3);
    }
    i = 4;
    steps.now(i, "waiting for the provider…");
    const answer = await waitForAnswer(app, id, (s) => steps.now(4, s));
    localStorage.removeItem(INFLIGHT);
    if (answer.confirmed) {
      steps.done(i, `confirmed: serving at ${answer.endpoint}`);
      app.say("ok", `Lease ${id} is running.`);
      location.hash = `#/lease/${id}`;
    } else {
      steps.failed(i, `rejected: ${answer.reason}. Your deposit is yours: withdraw it on the lease's page.`);
      app.say("error", `The provider rejected lease ${id}: ${answer.reason}.`);
    }
  } catch (e) {
    const x = explain("delivering the manifest", e);
    steps.failed(i, x.message);
    app.say("error", x.message);
    throw x;
  }
}

async function waitForAnswer(app: App, id: bigint, tell: (s: string) => void): Promise<{ confirmed: boolean; endpoint?: string; reason?: string }> {
  const started = Date.now();
  for (;;) {
    const lease = await app.reader.lease(id);
    if (lease.status !== 1) {
      const logs = await app.reader.history(id);
      for (const l of logs) {
        if (l.eventName === "LeaseConfirmed") return { confirmed: true, endpoint: (l.args as { endpoint: string }).endpoint };
        if (l.eventName === "LeaseRejected") return { confirmed: false, reason: REJECT_REASON[Number((l.args as { reason: number }).reason)] ?? "unknown reason" };
      }
      return { confirmed: false, reason: `the lease is now ${lease.status}` };
    }
    const s = Math.round((Date.now() - started) / 1000);
    if (s > 600) throw new Explained(`The provider has not answered in 10 minutes; lease ${id} stays pending. Its page shows when it changes, and it can be cancelled after the accept timeout.`, "network");
    tell(`waiting for the provider… ${s} s`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** An EIP-2612 permit for exactly `value`, compact (r, vs); undefined when the token or wallet cannot. */
async function signPermit(app: App, w: Connected, value: bigint): Promise<{ deadline: bigint; r: Hex; vs: Hex } | undefined> {
  const token = app.token.address;
  let nonce: bigint;
  let dom: { name: string; version: string };
  try {
    nonce = await app.reader.client.readContract({ address: token, abi: tokenAbi, functionName: "nonces", args: [w.account] });
    const [, name, version] = await app.reader.client.readContract({ address: token, abi: tokenAbi, functionName: "eip712Domain" });
    dom = { name, version };
  } catch {
    return undefined;
  }
  const deadline = (await app.reader.now()) + 3600n;
  try {
    const sig = await w.client.signTypedData({
      account: w.account,
      domain: { ...dom, chainId: app.config.chainId, verifyingContract: token },
      types: { Permit: [{ name: "owner", type: "address" }, { name: "spender", type: "address" }, { name: "value", type: "uint256" }, { name: "nonce", type: "uint256" }, { name: "deadline", type: "uint256" }] },
      primaryType: "Permit",
      message: { owner: w.account, spender: app.config.escrow, value, nonce, deadline },
    });
    const compact = signatureToCompactSignature(parseSignature(sig));
    return { deadline, r: compact.r, vs: compact.yParityAndS };
  } catch (e) {
    const code = (e as { code?: number; cause?: { code?: number } }).code ?? (e as { cause?: { code?: number } }).cause?.code;
    if (code === 4200 || code === -32601) return undefined;
    throw explain("signing the spending permit", e);
  }
}
