// The console's entry: configuration, wallet discovery, the header and the router.

import "./style.css";

import { type App, pendingTx, resumePending } from "./app";
import { Reader } from "./chain";
import { ConfigError, loadConfig } from "./config";
import { explain } from "./errors";
import { deployPage } from "./pages/deploy";
import { leasePage, leasesPage } from "./pages/lease";
import { providerPage, providersPage } from "./pages/provider";
import { fill, h, note, short } from "./ui";
import { connect, discover, remembered, switchChain, wallets } from "./wallet";

const top = document.getElementById("top") as HTMLElement;
const page = document.getElementById("page") as HTMLElement;
const status = document.getElementById("status") as HTMLElement;

let pageToken = 0;

async function start(): Promise<void> {
  let config;
  try {
    config = await loadConfig();
  } catch (e) {
    fill(page, note("error", e instanceof ConfigError ? e.message : `The console could not start: ${(e as Error).message}`));
    return;
  }
  const reader = new Reader(config);
  let token;
  try {
    token = await reader.token(config.paymentToken);
  } catch (e) {
    fill(page, note("error", `The chain at ${config.rpcUrl} does not answer, or has no Berth deployment there: ${explain("reading the payment token", e).message}`));
    return;
  }
  const app: App = {
    config,
    reader,
    token,
    refresh: () => {
      header(app);
      void route(app);
    },
    say: (kind, text) => fill(status, text ? note(kind, text, "status") : null),
  };
  discover(() => {
    header(app);
    const want = remembered();
    const d = wallets().find((w) => want && (w.info.rdns === want || w.info.uuid === want));
    if (d && !app.wallet) void connectTo(app, d);
  });
  window.addEventListener("hashchange", () => {
    app.say("info", "");
    void route(app);
  });
  header(app);
  await route(app);
  void resumePending(app);
}

async function connectTo(app: App, d: ReturnType<typeof wallets>[number]): Promise<void> {
  try {
    app.wallet = await connect(d, app.config);
    d.provider.on?.("chainChanged", (id: string) => {
      if (app.wallet) app.wallet.chainId = Number(id);
      app.refresh();
    });
    d.provider.on?.("accountsChanged", () => void connectTo(app, d));
    // A connection made while a transaction is in flight (the wallet reconnecting after a
    // reload) must not wipe the "waiting for transaction" line; its outcome replaces it.
    if (!pendingTx()) app.say("info", "");
  } catch (e) {
    app.say("error", explain("connecting the wallet", e).message);
  }
  app.refresh();
}

function header(app: App): void {
  const here = location.hash || "#/";
  const link = (href: string, text: string) =>
    h("a", { href, class: here === href || (href !== "#/" && here.startsWith(href)) ? "here" : undefined }, text);
  const w = app.wallet;
  let wallet: HTMLElement;
  if (!w) {
    const found = wallets();
    wallet = h(
      "div",
      { class: "wallet" },
      found.length === 0
        ? h("span", { class: "muted" }, "No wallet found in this browser: install one (any EIP-6963 wallet) to sign.")
        : found.map((d) => h("button", { onclick: () => void connectTo(app, d), "data-testid": "connect" }, `Connect ${d.info.name}`)),
    );
  } else {
    const wrong = w.chainId !== app.config.chainId;
    wallet = h(
      "div",
      { class: "wallet" },
      h("span", { "data-testid": "account", title: w.account }, `${w.info.name}: ${short(w.account)}`),
      wrong
        ? h(
            "button",
            {
              "data-testid": "switch-chain",
              onclick: async () => {
                try {
                  await switchChain(w, app.config);
                } catch (e) {
                  app.say("error", explain("switching the chain", e).message);
                }
                app.refresh();
              },
            },
            `Wrong chain (${w.chainId}): switch to ${app.config.chainName}`,
          )
        : h("span", { class: "muted" }, app.config.chainName),
    );
  }
  fill(
    top,
    h("h1", {}, "Berth"),
    h("nav", {}, link("#/", "Deploy"), link("#/leases", "My leases"), link("#/providers", "Providers"), link("#/provider", "Provide")),
    wallet,
  );
}

async function route(app: App): Promise<void> {
  const mine = ++pageToken;
  const here = location.hash.replace(/^#/, "") || "/";
  const current = () => mine === pageToken;
  let m: RegExpMatchArray | null;
  try {
    if ((m = here.match(/^\/lease\/(\d{1,30})$/))) await leasePage(app, page, BigInt(m[1] as string), current);
    else if (here === "/leases") await leasesPage(app, page);
    else if (here === "/providers") await providersPage(app, page);
    else if ((m = here.match(/^\/provider\/(\d{1,9})$/))) await providerPage(app, page, Number(m[1]), current);
    else if (here === "/provider") await providerPage(app, page, undefined, current);
    else if (here === "/" || here === "/deploy") deployPage(app, page);
    else fill(page, note("error", `There is no page ${here}.`), h("a", { href: "#/" }, "Deploy a container"));
  } catch (e) {
    if (current()) fill(page, note("error", explain("loading the page", e).message));
  }
}

void start();
