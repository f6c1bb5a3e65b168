// Where the console finds its chain: `config.json` beside index.html, the deployment file
// forge script writes (deployments/<chainId>.json) plus the RPC URL reads go to.

import { type Address, getAddress } from "viem";

export interface Config {
  chainId: number;
  rpcUrl: string;
  registry: Address;
  escrow: Address;
  paymentToken: Address;
  startBlock: bigint;
  minOpenRunway: number;
  finalReportWindow: number;
  challengeWindow: number;
  chainName: string;
}

export class ConfigError extends Error {}

export function readConfig(raw: unknown): Config {
  if (typeof raw !== "object" || raw === null) throw new ConfigError("config.json is not a JSON object");
  const o = raw as Record<string, unknown>;
  const need = (k: string): unknown => {
    if (o[k] === undefined) throw new ConfigError(`config.json has no \`${k}\``);
    return o[k];
  };
  const address = (k: string): Address => {
    try {
      return getAddress(String(need(k)));
    } catch {
      throw new ConfigError(`config.json \`${k}\` is not an address`);
    }
  };
  const int = (k: string, fallback?: number): number => {
    const v = o[k] ?? fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new ConfigError(`config.json \`${k}\` is not a whole number`);
    return v;
  };
  const rpcUrl = String(need("rpcUrl"));
  if (!/^https?:\/\//.test(rpcUrl)) throw new ConfigError("config.json `rpcUrl` is not an http(s) URL");
  return {
    chainId: int("chainId"),
    rpcUrl,
    registry: address("providerRegistry"),
    escrow: address("leaseEscrow"),
    paymentToken: address("paymentToken"),
    startBlock: BigInt(int("startBlock", 0)),
    minOpenRunway: int("minOpenRunway", 0),
    finalReportWindow: int("finalReportWindow", 0),
    challengeWindow: int("challengeWindow", 0),
    chainName: typeof o.chainName === "string" ? o.chainName : `chain ${o.chainId}`,
  };
}

export async function loadConfig(): Promise<Config> {
  let resp: Response;
  try {
    resp = await fetch("./config.json", { cache: "no-store" });
  } catch (e) {
    throw new ConfigError(`config.json could not be fetched: ${(e as Error).message}`);
  }
  if (!resp.ok) throw new ConfigError(`config.json: the server answered ${resp.status}; put the deployment file there (see console/README.md)`);
  return readConfig(await resp.json());
}
