// End-to-end test of the web admin site: Debian's Chromium (headless, driven by playwright-core,
// which never downloads a browser) logs in, creates a VM booting the guest kit, starts it, sees
// the serial console print VINE-BOOT-OK, types a command into it, attaches the graphical
// console, pauses, resumes and turns it off, and finds those events in the event log page; a host
// alone has no Host column and lists itself alone on the hosts page. Screenshots of the main pages go
// to VINE_SCREENSHOTS. Run by crates/vine/tests/web_ui.rs against a real daemon.
//
// Environment: VINE_URL, VINE_USER, VINE_PASSWORD, VINE_VM, VINE_KERNEL, VINE_INITRD,
// VINE_APPEND, VINE_SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const url = env("VINE_URL");
const vm = env("VINE_VM");
const shots = env("VINE_SCREENSHOTS");
const BOOT_MS = 240_000;
const STEP_MS = 60_000;

const t0 = Date.now();
const step = (what) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${what}`);

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let failed = false;
const page = await (await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } })).newPage();
page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") console.log(`browser console: ${m.text()}`); });
page.on("response", (r) => { if (r.status() >= 400) console.log(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`); });
page.setDefaultTimeout(STEP_MS);

const shot = async (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const waitState = async (s, timeout = STEP_MS) => {
  await page.waitForSelector(`#vm-state [data-state="${s}"]`, { timeout });
  step(`state is ${s}`);
};
const control = async (c) => {
  step(`click ${c}`);
  await page.click(`#controls [data-control="${c}"]:not([disabled])`);
};
// Before login no part of the top bar (its links, the user, "Log out") may be visible: checked
// by what Chromium lays out, not by the attribute, since a style rule can override `hidden`.
const noNavigation = async (where) => {
  const shown = await page.evaluate(() =>
    [...document.querySelectorAll("#top, #top nav a, #logout")]
      .filter((e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden")
      .map((e) => e.id || e.textContent.trim()));
  if (shown.length) throw new Error(`${where} shows the navigation: ${shown.join(", ")}`);
  step(`${where} shows no navigation`);
};
const flashText = async () => (await page.locator("#flash").textContent()) || "";
const headers = async (table) => page.$$eval(`${table} thead th`, (ths) => ths.map((t) => t.textContent.trim()));

try {
  // Login.
  await page.goto(url);
  await page.waitForSelector("#login-form");
  await noNavigation("the login page");
  await shot("login");
  await page.fill("#user", env("VINE_USER"));
  await page.fill("#password", "wrong password");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#flash")?.textContent.includes("wrong user name or password"));
  step("a wrong password is refused");
  await page.fill("#password", env("VINE_PASSWORD"));
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#create-form");
  step("logged in");

  // Create the VM (direct kernel boot of the guest kit).
  await page.fill("#create-form [name=name]", vm);
  await page.fill("#create-form [name=memory]", "256");
  await page.fill("#create-form [name=kernel]", env("VINE_KERNEL"));
  await page.fill("#create-form [name=initrd]", env("VINE_INITRD"));
  await page.fill("#create-form [name=append]", env("VINE_APPEND"));
  await page.fill("#create-form [name=cpu_weight]", "200");
  await page.click("#create-form button[type=submit]");
  await page.waitForURL(`**/#/vm/${vm}`);
  await waitState("off");
  // "256" in the memory field is 256 MiB, as `vine vm create --memory 256` is.
  const memoryOf = () => page.evaluate(async (n) => (await (await fetch(`/api/vms/${n}`)).json()).memory, vm);
  if ((await memoryOf()) !== 256 * 1048576) throw new Error(`memory "256" gave ${await memoryOf()} bytes`);
  step(`created ${vm} with 256 MiB`);

  // Start; the serial console shows the guest booting.
  await control("start");
  await waitState("running");
  await page.waitForFunction(() => {
    const t = window.vineTerminal;
    if (!t) return false;
    const b = t.buffer.active;
    for (let i = 0; i < b.length; i++) {
      if (b.getLine(i)?.translateToString(true).includes("VINE-BOOT-OK")) return true;
    }
    return false;
  }, null, { timeout: BOOT_MS, polling: 500 });
  step("the serial console printed VINE-BOOT-OK");
  // Keystrokes reach the guest's shell through the websocket and the serial socket.
  await page.click("#terminal");
  await page.keyboard.type("echo VINE-TYPED-$((6*7))\n");
  await page.waitForFunction(() => {
    const b = window.vineTerminal.buffer.active;
    for (let i = 0; i < b.length; i++) {
      if (b.getLine(i)?.translateToString(true).includes("VINE-TYPED-42")) return true;
    }
    return false;
  }, null, { timeout: STEP_MS, polling: 250 });
  step("typed into the serial console: the guest's shell answered VINE-TYPED-42");
  await page.waitForFunction(() => /% of \d+ vCPU/.test(document.querySelector("#cpu-now")?.textContent || ""), null, { timeout: STEP_MS });
  step(`CPU graph: ${await page.locator("#cpu-now").textContent()}`);

  // Graphical console (noVNC through the authenticated websocket).
  await page.click("#vnc-connect");
  await page.waitForFunction(() => document.querySelector("#vnc-status")?.textContent === "connected", null, { timeout: STEP_MS });
  await page.waitForSelector("#vnc canvas");
  step("the graphical console connected");
  await shot("vm");

  // Resource controls through PATCH.
  await page.fill("#set-form [name=cpu_weight]", "300");
  await page.click("#set-form button[type=submit]");
  await page.waitForFunction(() => /CPU weight\s*300/.test(document.querySelector("#config")?.innerText || ""));
  step("the CPU weight changed to 300");
  // Sizes with units; a bad one is refused with a sentence naming the field.
  await page.fill("#set-form [name=memory]", "lots");
  await page.click("#set-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#flash")?.textContent.includes('memory: "lots" is not a size'));
  await page.fill("#set-form [name=memory]", "0.5G");
  await page.click("#set-form button[type=submit]");
  await page.waitForFunction(async (n) => (await (await fetch(`/api/vms/${n}`)).json()).memory === 512 * 1048576, vm, { polling: 250, timeout: STEP_MS });
  step("memory set to 0.5G is 512 MiB; \"lots\" was refused");

  await control("pause");
  await waitState("paused");
  await control("resume");
  await waitState("running");
  await control("off");
  await waitState("off");
  if (!(await flashText()).includes(vm)) throw new Error(`no confirmation after off: ${await flashText()}`);

  // The VM list shows its live state.
  await page.click('nav a[data-nav="vms"]');
  await page.waitForSelector(`#vm-table tr[data-vm="${vm}"] [data-state="off"]`);
  step("the VM list shows it off");
  // A host alone: its VMs carry no host, so the list has no Host column and no host filter.
  if ((await headers("#vm-table")).includes("Host") || (await page.locator("#vm-table td[data-host]").count()) ||
      (await page.isVisible("#host-filter"))) {
    throw new Error(`a host alone shows a Host column or filter: ${await headers("#vm-table")}`);
  }
  step("a host alone: no Host column in the VM list");
  await shot("vms");

  // A VM from a template: a linked clone of its base, with a cloud-init host name.
  const template = env("VINE_TEMPLATE");
  await page.waitForSelector("#template-card:not([hidden])");
  await page.fill("#template-form [name=name]", "webclone");
  await page.selectOption("#template-form [name=template]", template);
  await page.fill("#template-form [name=hostname]", "clone-host");
  await page.click("#template-form button[type=submit]");
  await page.waitForSelector('h1:has-text("webclone")', { timeout: STEP_MS });
  step(`made webclone from template ${template}`);
  await page.click('nav a[data-nav="vms"]');
  await page.waitForSelector('#vm-table tr[data-vm="webclone"]');

  // A container beside the VMs: its kind in the list, and its console in the same terminal,
  // keystrokes reaching its shell through vine's relay into lxc-console.
  const ct = env("VINE_CONTAINER");
  await page.waitForSelector(`#vm-table tr[data-vm="${ct}"][data-kind="container"]`);
  if (!(await headers("#vm-table")).includes("Kind")) throw new Error(`no Kind column beside a container: ${await headers("#vm-table")}`);
  await page.click(`#vm-table tr[data-vm="${ct}"] a`);
  await page.waitForSelector(`h1:has-text("${ct}")`);
  const termHas = (what) => page.waitForFunction((w) => {
    const t = window.vineTerminal;
    if (!t) return false;
    const b = t.buffer.active;
    for (let i = 0; i < b.length; i++) {
      if (b.getLine(i)?.translateToString(true).includes(w)) return true;
    }
    return false;
  }, what, { timeout: STEP_MS, polling: 250 });
  await termHas(`vine-ct: up ${ct}`);
  await page.click("#terminal");
  await page.keyboard.type("echo CT-TYPED-$((6*7))\n");
  await termHas("CT-TYPED-42");
  if (await page.locator("#vnc-card").isVisible()) throw new Error("a container's page offers a graphical console");
  step(`container ${ct}: listed as a container, its console answered CT-TYPED-42 typed in the page`);
  await page.click('nav a[data-nav="vms"]');
  await page.waitForSelector("#vm-table tbody tr");

  // The event log has the controls, in order.
  await page.click('nav a[data-nav="events"]');
  await page.waitForSelector("#events tbody tr");
  const kinds = await page.$$eval("#events tbody tr", (rows) => rows.map((r) => `${r.children[2].textContent.trim()} ${r.dataset.kind}`));
  const mine = kinds.filter((k) => k.startsWith(`${vm} `)).map((k) => k.split(" ")[1]).reverse();
  step(`events of ${vm}: ${mine.join(", ")}`);
  if ((await headers("#events")).includes("Host")) throw new Error(`a host alone's event log has a Host column: ${await headers("#events")}`);
  const want = ["vm.start", "vm.pause", "vm.resume", "vm.off"];
  let at = 0;
  for (const k of mine) if (k === want[at]) at++;
  if (at !== want.length) throw new Error(`the event log lacks ${want.slice(at).join(", ")} (has ${mine.join(", ")})`);
  await shot("events");

  // The event stream delivers a new event live to the open page.
  const before = await page.locator("#events tbody tr").count();
  await page.evaluate(async (name) => {
    await fetch(`/api/vms/${name}`, { method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ cpu_weight: 150 }) });
  }, vm);
  await page.waitForFunction((n) => document.querySelectorAll("#events tbody tr").length > n, before);
  step("a new event appeared live on the event log page");

  // The hosts page of a host alone: itself, online, with no maintenance (a pool's) to toggle.
  await page.click('nav a[data-nav="hosts"]');
  await page.waitForSelector('#host-table tbody tr [data-state="online"]');
  const hostRows = await page.locator("#host-table tbody tr").count();
  const toggles = await page.locator("#host-table button[data-maintenance]").count();
  if (hostRows !== 1 || toggles !== 0) throw new Error(`a host alone's hosts page: ${hostRows} rows, ${toggles} maintenance buttons`);
  step("the hosts page lists this host alone, online");

  await page.click('nav a[data-nav="users"]');
  await page.waitForSelector("#users tbody tr");
  // A new user gets the use right on a storage pool, then loses it.
  const pool = process.env.VINE_POOL;
  await page.fill('#user-form input[name="name"]', "pooluser");
  await page.fill('#user-form input[name="password"]', "pooluser-password");
  await page.click("#user-form button");
  await page.waitForFunction(() => [...document.querySelectorAll("#users tbody td")].some((td) => td.textContent === "pooluser"));
  await page.fill('#grant-form input[name="user"]', "pooluser");
  await page.selectOption('#grant-form select[name="kind"]', "pool");
  await page.fill('#grant-form input[name="object"]', pool);
  await page.selectOption('#grant-form select[name="right"]', "use");
  await page.click("#grant-form button");
  const row = `#acl tbody tr:has-text("storage pool ${pool}")`;
  await page.waitForSelector(row);
  step(`granted pooluser the use of storage pool ${pool}`);
  await shot("users");
  await page.click(`${row} button`);
  await page.waitForSelector(row, { state: "detached" });
  step("revoked it");

  // Logging out ends the session.
  await page.click("#logout");
  await page.waitForSelector("#login-form");
  await noNavigation("the login page after logging out");
  const status = await page.evaluate(async () => (await fetch("/api/me")).status);
  if (status !== 401) throw new Error(`after logout /api/me answered ${status}`);
  step("logged out");
  console.log("E2E-OK");
} catch (e) {
  failed = true;
  console.log(`E2E-FAILED: ${e.stack || e}`);
  await shot("failure").catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
