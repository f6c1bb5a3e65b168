// The console's state shared by every page: configuration, chain reader, payment token, the
// connected wallet, and sending a transaction so that a reload picks it up again.

import type { Abi, Address, Hex, TransactionReceipt } from "viem";

import type { Config } from "./config";
import { Explained, explain } from "./errors";
import { type Reader, type Token } from "./chain";
import type { Connected } from "./wallet";

export interface App {
  config: Config;
  reader: Reader;
  /** The deployment's payment token. */
  token: Token;
  wallet?: Connected;
  /** Redraws the header (wallet state) and the current page. */
  refresh(): void;
  /** Shows a message in the page's status line. */
  say(kind: "info" | "ok" | "error" | "busy", text: string): void;
}

/** A transaction sent and not yet seen mined, kept so that a reload waits for it again. */
export interface Pending { hash: Hex; what: string; page: string; at: number }

const PENDING = "berth.pending";

export const pendingTx = (): Pending | undefined => {
  try {
    return JSON.parse(localStorage.getItem(PENDING) ?? "null") ?? undefined;
  } catch {
    return undefined;
  }
};

/** The wallet, connected and on the console's chain; a sentence saying what is missing otherwise. */
export function ready(app: App, what: string): Connected {
  const w = app.wallet;
  if (!w) throw new Explained(`Connect a wallet first: ${what} is signed in your wallet.`, "other");
  if (w.chainId !== app.config.chainId) {
    throw new Explained(`Your wallet is on chain ${w.chainId}; this console runs on ${app.config.chainName} (chain ${app.config.chainId}). Switch the wallet's chain (the button above) and try again.`, "chain");
  }
  return w;
}

export interface Call {
  address: Address;
  abi: Abi;
  functionName: string;
  args: readonly unknown[];
}

/**
 * Simulates `call` (a revert is explained before the wallet asks anything), has the wallet
 * sign and send it, remembers its hash until it is mined, and returns the receipt.
 */
export async function send(app: App, what: string, call: Call): Promise<TransactionReceipt> {
  const w = ready(app, what);
  try {
    const { request } = await app.reader.client.simulateContract({ ...call, account: w.account } as never);
    app.say("busy", `${what}: confirm the transaction in your wallet…`);
    const hash = await w.client.writeContract({ ...(request as object), account: w.account, chain: w.client.chain } as never);
    localStorage.setItem(PENDING, JSON.stringify({ hash, what, page: location.hash, at: Date.now() } satisfies Pending));
    return await mined(app, what, hash);
  } catch (e) {
    throw explain(what, e);
  }
}

/** Waits for `hash` (at most 2 minutes), forgets it once mined, fails on a revert. */
export async function mined(app: App, what: string, hash: Hex): Promise<TransactionReceipt> {
  app.say("busy", `${what}: waiting for transaction ${hash.slice(0, 10)}… to be mined`);
  const receipt = await app.reader.client.waitForTransactionReceipt({ hash, timeout: 120_000 });
  if (pendingTx()?.hash === hash) localStorage.removeItem(PENDING);
  if (receipt.status !== "success") {
    throw new Explained(`${what}: transaction ${hash} was mined but reverted; nothing changed.`, "revert");
  }
  app.say("info", "");
  return receipt;
}

/** After a reload: waits for the transaction that was in flight, and says how it ended. */
export async function resumePending(app: App): Promise<void> {
  const p = pendingTx();
  if (!p) return;
  try {
    await mined(app, p.what, p.hash);
    app.say("ok", `${p.what}: transaction ${p.hash.slice(0, 10)}… was mined.`);
  } catch (e) {
    localStorage.removeItem(PENDING);
    app.say("error", explain(p.what, e).message);
  }
  app.refresh();
}

/** Sends `call` and says how it went in the status line, then redraws the page. */
export async function act(app: App, what: string, call: Call, done: string): Promise<void> {
  try {
    await send(app, what, call);
    app.say("ok", done);
  } catch (e) {
    app.say("error", explain(what, e).message);
  }
  app.refresh();
}
