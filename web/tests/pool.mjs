// End-to-end test of the web admin site on a pool of two hosts: Debian's Chromium (headless,
// playwright-core) runs inside host h2's network namespace, logs in to h2's UI and checks that it
// shows and controls the whole pool: the VM list with each VM's host (and its filter by host), the
// hosts page (states, CPUs, maintenance on and off), the event log's Host column, a VM's host on
// its page, a host whose daemon is killed shown offline with its VM unknown, then back, and a
// VM migrated live from its page.
// Run by crates/vine/tests/web_pool.rs, which does the steps the page cannot: at each
// `WAIT step` line this script prints, it checks or does that step and answers `GO` on stdin.
//
// Environment: VINE_URL (h2's UI), VINE_USER, VINE_PASSWORD, VINE_HOSTS (JSON: host name → CPUs
// as `vine host list` gives them), VINE_VMS (JSON: VM name → its host), VINE_SCREENSHOTS (a
// directory), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const url = env("VINE_URL");
const hosts = JSON.parse(env("VINE_HOSTS"));
const vms = JSON.parse(env("VINE_VMS"));
const shots = env("VINE_SCREENSHOTS");
const STEP_MS = 30_000;
const OFFLINE_MS = 20_000;

const t0 = Date.now();
const step = (what) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);

// The Rust side's answers, one line each.
const answers = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const ask = async (what) => {
  console.log(`WAIT ${what}`);
  const { value, done } = await answers.next();
  if (done || value.trim() !== "GO") throw new Error(`the test did not let "${what}" go on: ${done ? "end of input" : value}`);
};

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let failed = false;
const page = await (await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } })).newPage();
// Whatever the page logs as an error, or throws, fails the test at its end.
const errors = [];
page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") errors.push(`browser console: ${m.text()} (${m.location().url})`); });
page.on("response", (r) => { if (r.status() >= 400) console.log(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`); });
page.setDefaultTimeout(STEP_MS);

const shot = async (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const nav = async (where) => page.click(`nav a[data-nav="${where}"]`);
const hostRow = (h) => `#host-table tbody tr[data-host="${h}"]`;
const hostState = async (h, s, timeout = STEP_MS) => page.waitForSelector(`${hostRow(h)} [data-state="${s}"]`, { timeout });
const vmRows = async () => page.$$eval("#vm-table tbody tr", (rows) => rows.map((r) => r.dataset.vm));
const headers = async (table) => page.$$eval(`${table} thead th`, (ths) => ths.map((t) => t.textContent.trim()));
// At a phone's width nothing sticks out of the page: wide tables scroll inside their card.
const fitsNarrow = async (where) => {
  await page.setViewportSize({ width: 390, height: 800 });
  const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize({ width: 1280, height: 900 });
  if (over > 0) throw new Error(`${where} is ${over}px wider than a 390px window`);
};

try {
  await page.goto(url);
  await page.waitForSelector("#login-form");
  await page.fill("#user", env("VINE_USER"));
  await page.fill("#password", env("VINE_PASSWORD"));
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#create-form");
  // Before the login the page asks /api/me whether it has a session: that 401 is the only error.
  const early = errors.splice(0).filter((e) => !/status of 401 .*\/api\/me\)$/.test(e));
  if (early.length) throw new Error(`the login page logged errors:\n${early.join("\n")}`);
  step("logged in to h2");

  // The VM list: every VM of the pool, each with its host.
  for (const [vm, host] of Object.entries(vms)) {
    await page.waitForSelector(`#vm-table tr[data-vm="${vm}"] td[data-host="${host}"]`);
  }
  const cols = await headers("#vm-table");
  if (cols[1] !== "Host") throw new Error(`the VM list's columns: ${cols.join(", ")}`);
  const listed = await page.$$eval("#vm-table tbody tr", (rows) => rows.map((r) => `${r.dataset.vm}@${r.querySelector("td[data-host]")?.textContent.trim()}`));
  const want = Object.entries(vms).map(([v, h]) => `${v}@${h}`).sort();
  if (listed.sort().join(" ") !== want.join(" ")) throw new Error(`the VM list shows ${listed.join(" ")}, not ${want.join(" ")}`);
  step(`the VM list shows ${listed.join(", ")}`);
  await shot("vms-pool");
  await fitsNarrow("the VM list");

  // The hosts page: both online, with their CPUs and VMs.
  await nav("hosts");
  for (const [h, cpus] of Object.entries(hosts)) {
    await hostState(h, "online");
    const shown = (await page.locator(`${hostRow(h)} td[data-cpus]`).textContent()).trim();
    if (shown !== String(cpus)) throw new Error(`${h} shows ${shown} CPUs, not ${cpus}`);
    const count = Object.values(vms).filter((x) => x === h).length;
    const n = (await page.locator(`${hostRow(h)} td[data-vms]`).textContent()).trim();
    if (!n.startsWith(String(count))) throw new Error(`${h} shows ${n} VMs, not ${count}`);
  }
  step(`the hosts page lists ${Object.keys(hosts).join(", ")} online with their CPUs and VMs`);
  await fitsNarrow("the hosts page");

  // Maintenance on h1 from the page, and off again; the test checks each with the CLI.
  await page.click(`${hostRow("h1")} button[data-maintenance][data-on="true"]`);
  await hostState("h1", "maintenance");
  if (!(await page.locator("#flash").textContent()).includes("maintenance")) throw new Error("no confirmation of maintenance");
  step("h1 shows in maintenance");
  await shot("hosts");
  await ask("h1-in-maintenance");
  await page.click(`${hostRow("h1")} button[data-maintenance][data-on="false"]`);
  await hostState("h1", "online");
  step("h1 shows online again");
  await ask("h1-out-of-maintenance");

  // The policy engine's page: advise mode set from it; a round appears, with the coordinator.
  await nav("policy");
  await page.waitForSelector('#policy-settings dd[data-key="Mode"]');
  await page.selectOption("#mode-form select", "advise");
  await page.click("#mode-form button");
  await page.waitForFunction(() => /round \d+ on h\d/.test(document.querySelector("#round-when")?.textContent || ""), null, { timeout: 60_000 });
  const coordinator = (await page.textContent('#policy-settings dd[data-key="Coordinator"]')).trim();
  if (!/^h[12]$/.test(coordinator)) throw new Error(`the coordinator shown: ${coordinator}`);
  step(`the policy page set advise mode; ${(await page.textContent("#round-when")).trim()}, coordinator ${coordinator}`);
  await ask("policy-advise");
  await page.selectOption("#mode-form select", "off");
  await page.click("#mode-form button");
  await page.waitForFunction(() => document.querySelector('#policy-settings dd[data-key="Mode"]')?.textContent === "off");
  await nav("hosts");
  await hostState("h1", "online");

  // A host's name shows its VMs.
  await page.click(`${hostRow("h2")} th a`);
  await page.waitForURL("**/#/vms?host=h2");
  const onH2 = Object.keys(vms).filter((v) => vms[v] === "h2").sort();
  await page.waitForFunction((n) => document.querySelectorAll("#vm-table tbody tr").length === n, onH2.length);
  if ((await vmRows()).sort().join(" ") !== onH2.join(" ")) throw new Error(`h2's VMs: ${(await vmRows()).join(" ")}, not ${onH2.join(" ")}`);
  if ((await page.locator("#host-filter select").inputValue()) !== "h2") throw new Error("the host filter does not say h2");
  step(`clicking h2 lists its VMs alone: ${onH2.join(", ")}`);

  // The event log names each event's host: h2 (where the page is) put h1 in maintenance.
  await nav("events");
  await page.waitForSelector("#events tbody tr");
  if ((await headers("#events"))[3] !== "Host") throw new Error(`the event log's columns: ${(await headers("#events")).join(", ")}`);
  await page.waitForSelector('#events tr[data-kind="host.maintenance"] td[data-host="h2"]');
  step("the event log has a Host column: host.maintenance on h2");

  // A VM's page names its host.
  const [vm1] = Object.keys(vms).filter((v) => vms[v] === "h1");
  await page.goto(`${url}#/vm/${vm1}`);
  await page.waitForFunction(() => /Host\s*h1/.test(document.querySelector("#config")?.innerText || ""));
  step(`${vm1}'s page says it is on h1`);

  // HA from the VM's page (its disks, none, are all on shared pools).
  await page.waitForSelector("#ha-field:not([hidden])");
  await page.check('#set-form input[name="ha"]');
  await page.click('#set-form button[type="submit"]');
  await page.waitForFunction(() => /HA\s*on/.test(document.querySelector("#config")?.innerText || ""));
  step(`${vm1} made HA from its page`);

  // h1's daemon killed: the hosts page shows it offline, the VM list its VM unknown.
  await nav("hosts");
  await hostState("h1", "online");
  await ask("kill-h1");
  const killed = Date.now();
  const left = () => Math.max(1, OFFLINE_MS - (Date.now() - killed));
  await hostState("h1", "offline", left());
  step(`h1 offline on the hosts page after ${((Date.now() - killed) / 1000).toFixed(1)} s`);
  await nav("vms");
  const unknown = `#vm-table tr[data-vm="${vm1}"] [data-state="unknown"]`;
  await page.waitForSelector(unknown, { timeout: left() });
  const tip = await page.locator(unknown).getAttribute("title");
  if (!tip?.includes("host offline")) throw new Error(`the unknown state's tooltip: ${tip}`);
  step(`${vm1} unknown in the VM list after ${((Date.now() - killed) / 1000).toFixed(1)} s, "${tip}"`);
  await page.goto(`${url}#/vm/${vm1}`);
  await page.waitForSelector('#vm-state [data-state="unknown"]');
  await page.waitForSelector("#host-offline:not([hidden])");
  const enabled = await page.locator("#controls [data-control]:not([disabled])").count();
  if (enabled) throw new Error(`${enabled} controls of ${vm1} are enabled while its host is offline`);
  step(`${vm1}'s page says h1 is offline, every control greyed out`);

  // h1 back.
  await nav("hosts");
  await ask("start-h1");
  await hostState("h1", "online", 60_000);
  await nav("vms");
  await page.waitForSelector(`#vm-table tr[data-vm="${vm1}"] [data-state="off"]`);
  step("h1 online again, its VM off as it was");

  // Live migration from a VM's page: the VM on h2 starts, goes to h1, and its page follows it.
  const [vm2] = Object.keys(vms).filter((v) => vms[v] === "h2");
  await page.goto(`${url}#/vm/${vm2}`);
  await page.waitForSelector("#migrate-card:not([hidden])");
  if (!(await page.locator("#migrate-go").isDisabled())) throw new Error("Migrate is offered for a VM that is off");
  await page.click('#controls [data-control="start"]');
  await page.waitForSelector('#vm-state [data-state="running"]');
  await page.waitForFunction(() => !document.querySelector("#migrate-go").disabled);
  const targets = await page.$$eval("#migrate-to option", (o) => o.map((x) => x.value));
  if (targets.join(",") !== "h1") throw new Error(`the hosts offered: ${targets.join(", ")}`);
  await page.click("#migrate-go");
  await page.waitForFunction(() => /migrated .* live to host 'h1'/.test(document.querySelector("#migrate-progress")?.textContent || ""), null, { timeout: 120_000 });
  await page.waitForFunction(() => /Host\s*h1/.test(document.querySelector("#config")?.innerText || ""));
  const said = await page.textContent("#migrate-progress");
  if (!/downtime \d+ ms/.test(said)) throw new Error(`the migration's figures: ${said}`);
  await page.waitForSelector('#vm-state [data-state="running"]');
  await shot("migrated");
  step(`${vm2} migrated live to h1 from its page: "${said}"`);

  if (errors.length) throw new Error(`the page logged errors:\n${errors.join("\n")}`);
  console.log("POOL-E2E-OK");
} catch (e) {
  failed = true;
  console.log(`POOL-E2E-FAILED: ${e.stack || e}`);
  for (const x of errors) console.log(x);
  await shot("failure").catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
