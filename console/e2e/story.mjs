// The console's end-to-end story in Debian's Chromium (headless, driven by playwright-core):
// connect a wallet → a refused signature changes nothing → deploy the example → confirmed →
// the endpoint serves → top-up → close → withdraw. A screenshot of each page goes to
// $BERTH_SCREENSHOTS. Run by tests/e2e/console.rs against the real stack; the environment
// names the console's URL, the chain and the tenant's key.

import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { chromium } from "playwright-core";
import { createPublicClient, http, parseAbi } from "viem";

import { TestWallet } from "./wallet.mjs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const consoleUrl = env("BERTH_CONSOLE_URL");
const rpcUrl = env("BERTH_RPC_URL");
const chainId = Number(env("BERTH_CHAIN_ID"));
const escrow = env("BERTH_ESCROW");
const shots = env("BERTH_SCREENSHOTS");
const expectBody = env("BERTH_EXPECT_BODY");
mkdirSync(shots, { recursive: true });

const chain = createPublicClient({ transport: http(rpcUrl) });
const escrowAbi = parseAbi(["function leaseCount() view returns (uint256)"]);
const leaseCount = () => chain.readContract({ address: escrow, abi: escrowAbi, functionName: "leaseCount" });

// Version 2 of the example (examples/hello/manifest-v2.yaml without the gateway's idle timeout
// and the shell): the same image and reservation, another page.
const UPDATED = `version: 1
services:
  web:
    image: localhost/berth-hello:latest
    command: [/bin/busybox, sh, -c, "echo 'hello from berth, updated in place' > /site/index.html && exec /bin/busybox httpd -f -v -p 8080 -h /site"]
    ports:
      - port: 8080
        expose: http
    resources:
      cpu: 500m
      memory: 256Mi
    volumes:
      - name: site
        mount: /site
`;

const rpc = async (method, params) => {
  const resp = await fetch(rpcUrl, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
  const body = await resp.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
};

const started = Date.now();
const say = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);
let shot = 0;
const screenshot = async (page, name) => {
  shot += 1;
  const file = join(shots, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  say(`screenshot ${file}`);
};

const browser = await chromium.launch({
  executablePath: process.env.BERTH_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const failures = [];
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, ignoreHTTPSErrors: true });
  // the wallet starts on Ethereum mainnet: the page must ask it to switch
  const wallet = new TestWallet({ rpcUrl, chainId, privateKey: env("BERTH_TENANT_KEY"), startChainId: 1 });
  await wallet.install(context);
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && say(`page console: ${m.text()}`));
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  const status = page.getByTestId("status");

  // connect
  await page.goto(consoleUrl);
  await page.getByTestId("connect").click();
  await page.getByTestId("account").waitFor();
  say(`connected ${await page.getByTestId("account").textContent()}`);
  const wrongChain = page.getByTestId("switch-chain");
  await wrongChain.waitFor();
  await screenshot(page, "wrong-chain");
  say(`on chain 1 the page says: "${await wrongChain.textContent()}"`);
  await wrongChain.click();
  await wrongChain.waitFor({ state: "detached" });
  say(`switched to chain ${chainId}`);
  await page.getByTestId("fit-1").filter({ hasText: "Yes" }).waitFor();
  await page.getByTestId("fit-2").filter({ hasText: "No: free CPU 250 millicores < 500 needed" }).waitFor();
  await page.getByTestId("provider-1").check();
  await page.getByTestId("deposit").fill("2");
  await page.getByTestId("deposit-verdict").filter({ hasText: "runway 2 h" }).waitFor();
  await screenshot(page, "deploy");

  // a refused signature: the page says so and nothing happens on chain
  const before = await leaseCount();
  wallet.rejectSignatures = 1;
  await page.getByTestId("deploy").click();
  await status.filter({ hasText: "You rejected the request in your wallet" }).waitFor();
  const after = await leaseCount();
  if (after !== before) throw new Error(`a refused signature opened a lease (${before} → ${after})`);
  say(`refused permit: "${await status.textContent()}"; leaseCount still ${after}`);
  await screenshot(page, "signature-refused");

  // deploy: permit signature + one transaction + signed upload, then progress until confirmed
  await page.getByTestId("deploy").click();
  await page.getByTestId("step-4").and(page.locator(".now")).waitFor({ timeout: 60_000 });
  await screenshot(page, "progress");
  await page.waitForURL(/#\/lease\/\d+$/, { timeout: 120_000 });
  const leaseId = page.url().match(/#\/lease\/(\d+)$/)[1];
  await page.getByTestId("lease-title").filter({ hasText: "active" }).waitFor();
  const endpoint = await page.getByTestId("endpoint").getAttribute("href");
  say(`lease ${leaseId} confirmed, endpoint ${endpoint}`);

  // the endpoint serves
  const app = await context.newPage();
  const answer = await app.goto(endpoint);
  const body = await app.locator("body").textContent();
  if (!answer?.ok() || !body.includes(expectBody.trim())) throw new Error(`the endpoint answered ${answer?.status()}: ${body}`);
  say(`the endpoint serves "${body.trim()}"`);
  await screenshot(app, "endpoint");
  await app.close();

  // usage reports reach the chart
  for (let i = 0; i < 60; i++) {
    if ((await page.locator("[data-testid=usage-chart] rect").count()) >= 3) break;
    await page.waitForTimeout(1000);
    await page.reload();
    await page.getByTestId("lease-title").waitFor();
  }
  if ((await page.locator("[data-testid=usage-chart] rect").count()) === 0) throw new Error("no usage report reached the chart in 60 s");
  await screenshot(page, "lease");

  // logs, through a token signed in the wallet, streamed from the provider's API (CORS)
  await page.getByTestId("open-logs").click();
  const logs = page.getByTestId("logs");
  await logs.filter({ hasText: /^\d{4}-\d\d-\d\dT/ }).waitFor({ timeout: 30_000 }).catch(async (e) => {
    throw new Error(`no log line in 30 s; the box says: ${await logs.textContent()}\n${e.message}`);
  });
  say(`logs: ${(await page.getByTestId("logs").textContent()).trim().split("\n")[0]}`);

  // top-up
  const balance = async () => (await page.getByTestId("balance").textContent()).trim();
  const was = await balance();
  await page.getByTestId("topup-amount").fill("1");
  await page.getByTestId("topup").click();
  await status.filter({ hasText: "topped up by 1 " }).waitFor({ timeout: 60_000 });
  await page.getByTestId("balance").filter({ hasNotText: was }).waitFor();
  say(`top-up: balance ${was} → ${await balance()}`);

  // auto top-up: a policy set, shown, removed
  await page.getByTestId("autotopup-set").click();
  await status.filter({ hasText: "Auto top-up set" }).waitFor({ timeout: 60_000 });
  await page.getByTestId("autotopup").filter({ hasText: "Active:" }).waitFor();
  say(`auto top-up: ${await page.getByTestId("autotopup").textContent()}`);
  await page.getByTestId("autotopup-clear").click();
  await page.getByTestId("autotopup").filter({ hasText: "None:" }).waitFor({ timeout: 60_000 });

  // the manifest updated in place: committed on chain, delivered signed, rolled out
  await page.getByTestId("update-manifest").fill(UPDATED);
  await page.getByTestId("update").click();
  await page.getByTestId("update-said").filter({ hasText: "The provider has the new manifest" }).waitFor({ timeout: 60_000 });
  for (let i = 0; ; i++) {
    const text = await fetch(endpoint).then((r) => r.text()).catch(() => "");
    if (text.includes("updated in place")) break;
    if (i > 60) throw new Error(`the update did not roll out in 60 s: ${text}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  say("the update rolled out: the endpoint serves the new page");

  // pending charges disputed: frozen for the arbiter
  await page.reload();
  await page.getByTestId("dispute").click();
  await status.filter({ hasText: "frozen for the arbiter" }).waitFor({ timeout: 60_000 });
  await page.getByTestId("charges").filter({ hasText: /disputed (0\.\d|[1-9])/ }).waitFor();
  say(`disputed: ${await page.getByTestId("charges").textContent()}`);

  // the tenant's leases and the provider's page (its leases and revenue)
  await page.goto(`${consoleUrl}#/leases`);
  await page.getByTestId("leases").filter({ hasText: `Lease ${leaseId}` }).waitFor();
  await page.goto(`${consoleUrl}#/provider/1`);
  await page.getByTestId("revenue").waitFor();
  await page.getByText(`Lease ${leaseId}`, { exact: true }).waitFor();
  await screenshot(page, "provider");
  await page.goto(`${consoleUrl}#/lease/${leaseId}`);
  await page.getByTestId("lease-title").filter({ hasText: "active" }).waitFor();

  // close, then withdraw once the final report is in (or its window is over)
  // ... sent while the chain mines nothing, the page reloaded: it waits for the same hash
  await rpc("evm_setAutomine", [false]);
  await page.getByTestId("close").click();
  await page.waitForFunction(() => localStorage.getItem("berth.pending") !== null, null, { timeout: 30_000 });
  const pending = JSON.parse(await page.evaluate(() => localStorage.getItem("berth.pending")));
  await page.reload();
  await status.filter({ hasText: `waiting for transaction ${pending.hash.slice(0, 10)}` }).waitFor();
  say(`reloaded with ${pending.what} in flight: "${await status.textContent()}"`);
  await rpc("evm_mine", []);
  await rpc("evm_setAutomine", [true]);
  await status.filter({ hasText: "was mined" }).waitFor({ timeout: 30_000 });
  await page.getByTestId("lease-title").filter({ hasText: "closing" }).waitFor({ timeout: 60_000 });
  say("closing");
  await screenshot(page, "closing");
  for (let i = 0; ; i++) {
    if (i > 40) throw new Error(`withdraw never succeeded: ${await status.textContent()}`);
    await page.getByTestId("withdraw").click();
    await status.filter({ hasText: /Withdrawn|would fail/ }).waitFor({ timeout: 60_000 });
    const said = await status.textContent();
    if (said.includes("Withdrawn")) break;
    say(`withdraw not yet: ${said}`);
    await page.waitForTimeout(2000);
    await page.reload();
    await page.getByTestId("withdraw").waitFor();
  }
  await page.getByTestId("lease-title").filter({ hasText: "closed" }).waitFor({ timeout: 30_000 });
  say(`lease ${leaseId} closed and withdrawn`);
  await screenshot(page, "withdrawn");

  // the provider's owner, in a browser of its own: pause, resume, claim what matured
  const ownerContext = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const ownerWallet = new TestWallet({ rpcUrl, chainId, privateKey: env("BERTH_OWNER_KEY") });
  await ownerWallet.install(ownerContext);
  const owner = await ownerContext.newPage();
  owner.on("pageerror", (e) => failures.push(`owner page error: ${e.message}`));
  await owner.goto(`${consoleUrl}#/provider/1`);
  await owner.getByTestId("connect").click();
  await owner.getByTestId("pause").click();
  await owner.getByText("Provider #1 — paused").waitFor({ timeout: 30_000 });
  await owner.getByTestId("unpause").click();
  await owner.getByText("Provider #1 — active").waitFor({ timeout: 30_000 });
  say("the owner paused and resumed provider 1");
  // the challenge window (30 s here) passes on chain, as it would with blocks coming
  await rpc("evm_increaseTime", [31]);
  await rpc("evm_mine", []);
  for (let i = 0; ; i++) {
    if (await owner.getByTestId("claim").isEnabled()) break;
    if (i > 60) throw new Error("no charge matured for the owner to claim in 60 s");
    await owner.waitForTimeout(1000);
    await owner.reload();
    await owner.getByTestId("claim").waitFor();
  }
  await owner.getByTestId("claim").click();
  await owner.getByTestId("status").filter({ hasText: /^Claimed .* from 1 lease\.$/ }).waitFor({ timeout: 30_000 });
  await owner.getByTestId("revenue").filter({ hasNotText: /^0 / }).waitFor();
  say(`the owner claimed; revenue ${await owner.getByTestId("revenue").textContent()}`);
  await screenshot(owner, "provider-claimed");
  console.log(JSON.stringify({ lease: leaseId, refusedLeaseCount: Number(after), requests: wallet.requests.length }));
} catch (e) {
  failures.push(e.stack ?? String(e));
} finally {
  await browser.close();
}
if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
