// Wallets through EIP-1193, found by EIP-6963 discovery (every injected wallet announces
// itself; the legacy `window.ethereum` is the fallback). Nothing custodial: every write is
// signed in the user's wallet.

import { type Address, type Chain, type EIP1193Provider, type WalletClient, createWalletClient, custom, getAddress, numberToHex } from "viem";

import type { Config } from "./config";

export interface WalletInfo { uuid: string; name: string; icon: string; rdns: string }
export interface Discovered { info: WalletInfo; provider: EIP1193Provider }

const found = new Map<string, Discovered>();
const listeners = new Set<() => void>();

/** Starts listening for announcements and asks wallets to announce themselves. */
export function discover(onChange: () => void): void {
  listeners.add(onChange);
  window.addEventListener("eip6963:announceProvider", ((ev: CustomEvent<Discovered>) => {
    const d = ev.detail;
    if (!d?.info?.uuid || !d.provider) return;
    found.set(d.info.uuid, d);
    for (const l of listeners) l();
  }) as EventListener);
  window.dispatchEvent(new Event("eip6963:requestProvider"));
}

/** The wallets found so far; the legacy injected provider when none announced itself. */
export function wallets(): Discovered[] {
  const list = [...found.values()];
  const legacy = (window as unknown as { ethereum?: EIP1193Provider }).ethereum;
  if (list.length === 0 && legacy) {
    list.push({ info: { uuid: "legacy", name: "Browser wallet", icon: "", rdns: "" }, provider: legacy });
  }
  return list;
}

export interface Connected {
  info: WalletInfo;
  provider: EIP1193Provider;
  account: Address;
  client: WalletClient;
  chainId: number;
}

export function chainOf(config: Config): Chain {
  return {
    id: config.chainId,
    name: config.chainName,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [config.rpcUrl] } },
  };
}

/** Asks the wallet for an account; the chain it is on is returned as is (see {@link switchChain}). */
export async function connect(d: Discovered, config: Config): Promise<Connected> {
  const accounts = (await d.provider.request({ method: "eth_requestAccounts" })) as string[];
  const first = accounts[0];
  if (!first) throw new Error("The wallet shared no account.");
  const account = getAddress(first);
  const chainId = Number(await d.provider.request({ method: "eth_chainId" }));
  localStorage.setItem("berth.wallet", d.info.rdns || d.info.uuid);
  return {
    info: d.info,
    provider: d.provider,
    account,
    chainId,
    client: createWalletClient({ account, chain: chainOf(config), transport: custom(d.provider) }),
  };
}

/** Asks the wallet to switch to the console's chain, adding it when the wallet does not know it. */
export async function switchChain(w: Connected, config: Config): Promise<void> {
  const chainId = numberToHex(config.chainId);
  try {
    await w.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (e) {
    if ((e as { code?: number }).code !== 4902) throw e;
    await w.provider.request({
      method: "wallet_addEthereumChain",
      params: [{ chainId, chainName: config.chainName, rpcUrls: [config.rpcUrl], nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 } }],
    });
  }
  w.chainId = Number(await w.provider.request({ method: "eth_chainId" }));
}

/** The wallet used last time, to reconnect to without asking which. */
export const remembered = (): string | null => localStorage.getItem("berth.wallet");
