// A wallet for the browser test: an EIP-1193 provider announced by EIP-6963 in the page, whose
// requests are answered here by a local account on anvil (no extension). Signatures can be
// refused on demand, as a person clicking "Reject" would.

import { createWalletClient, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";

export class TestWallet {
  constructor({ rpcUrl, chainId, privateKey, startChainId }) {
    this.rpcUrl = rpcUrl;
    this.chainId = chainId;
    // the chain the wallet says it is on until the page asks it to switch
    this.current = startChainId ?? chainId;
    this.account = privateKeyToAccount(privateKey);
    this.client = createWalletClient({
      account: this.account,
      transport: http(rpcUrl),
      chain: { id: chainId, name: "anvil", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 }, rpcUrls: { default: { http: [rpcUrl] } } },
    });
    this.rejectSignatures = 0;
    this.requests = [];
  }

  /** Installs the provider in every page of `context`. */
  async install(context) {
    await context.exposeBinding("__berthTestWallet", async (_source, method, params) => {
      this.requests.push(method);
      try {
        return { result: await this.answer(method, params ?? []) };
      } catch (e) {
        return { error: { code: e.code ?? -32603, message: e.message ?? String(e) } };
      }
    });
    await context.addInitScript(() => {
      const listeners = new Map();
      const provider = {
        async request({ method, params }) {
          const r = await window.__berthTestWallet(method, params ?? []);
          if (r.error) {
            const e = new Error(r.error.message);
            e.code = r.error.code;
            throw e;
          }
          return r.result;
        },
        on(event, fn) {
          if (!listeners.has(event)) listeners.set(event, new Set());
          listeners.get(event).add(fn);
        },
        removeListener(event, fn) {
          listeners.get(event)?.delete(fn);
        },
      };
      const info = {
        uuid: "6f1c2a4e-8d0b-4c1e-9a57-3b2f0e6d9c10",
        name: "Test Wallet",
        icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='16' height='16'/%3E",
        rdns: "org.berth.testwallet",
      };
      const announce = () =>
        window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
      window.addEventListener("eip6963:requestProvider", announce);
      announce();
    });
  }

  async answer(method, params) {
    switch (method) {
      case "eth_requestAccounts":
      case "eth_accounts":
        return [this.account.address];
      case "eth_chainId":
        return `0x${this.current.toString(16)}`;
      case "wallet_switchEthereumChain":
        if (Number(params[0]?.chainId) !== this.chainId) throw Object.assign(new Error("Unrecognized chain"), { code: 4902 });
        this.current = this.chainId;
        return null;
      case "eth_signTypedData_v4": {
        if (this.rejectSignatures > 0) {
          this.rejectSignatures -= 1;
          throw Object.assign(new Error("User rejected the request."), { code: 4001 });
        }
        return this.account.signTypedData(typed(JSON.parse(params[1])));
      }
      case "personal_sign":
        return this.account.signMessage({ message: { raw: params[0] } });
      case "eth_sendTransaction": {
        if (this.current !== this.chainId) throw Object.assign(new Error("wrong chain"), { code: 4901 });
        const tx = params[0];
        return this.client.sendTransaction({
          to: tx.to,
          data: tx.data,
          value: tx.value ? BigInt(tx.value) : undefined,
          gas: tx.gas ? BigInt(tx.gas) : undefined,
        });
      }
      default: {
        const resp = await fetch(this.rpcUrl, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
        });
        const body = await resp.json();
        if (body.error) throw Object.assign(new Error(body.error.message), { code: body.error.code });
        return body.result;
      }
    }
  }
}

/** EIP-712 JSON (numbers as strings) back into what viem signs: integers as bigints. */
function typed(data) {
  const { EIP712Domain: _, ...types } = data.types;
  const convert = (type, value) => {
    if (/^u?int\d*$/.test(type)) return BigInt(value);
    if (types[type]) return Object.fromEntries(types[type].map((f) => [f.name, convert(f.type, value[f.name])]));
    return value;
  };
  const domain = { ...data.domain };
  if (domain.chainId !== undefined) domain.chainId = Number(domain.chainId);
  return { domain, types, primaryType: data.primaryType, message: convert(data.primaryType, data.message) };
}
