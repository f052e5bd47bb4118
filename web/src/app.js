// vine's web admin site: one page, hash routes, only the REST API (docs/web.md).
// Login sets the session cookie (POST /api/login); every later request carries it.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

/** Text made safe for innerHTML. */
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${Math.round(n * 10) / 10} ${units[i]}`;
}

const MIB = 1 << 20;
const SIZE_UNITS = { "": 0, b: 1, k: 1024, kb: 1024, kib: 1024, m: MIB, mb: MIB, mib: MIB,
  g: 1024 * MIB, gb: 1024 * MIB, gib: 1024 * MIB, t: 1024 * 1024 * MIB, tb: 1024 * 1024 * MIB, tib: 1024 * 1024 * MIB };

/**
 * A size typed in a form, in bytes: `512M`, `2G`, `1.5G`, `4096B`; a bare number is `bare` bytes
 * each (MiB for memory), as on the command line. Throws an Error that names the field.
 */
function parseSize(text, bare, field) {
  const t = String(text ?? "").trim();
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(t);
  if (!m) throw new Error(`${field}: "${t}" is not a size (examples: 256, 512M, 2G)`);
  const unit = m[2].toLowerCase();
  if (!(unit in SIZE_UNITS)) throw new Error(`${field}: unknown unit "${m[2]}" in "${t}" (use K, M, G or T)`);
  const v = Math.round(Number(m[1]) * (SIZE_UNITS[unit] || bare));
  if (!Number.isSafeInteger(v)) throw new Error(`${field}: "${t}" is too large`);
  return v;
}

/** Bytes as the shortest exact size text: `2G`, `256M`, `1536K`, else `NB`. */
function sizeText(n) {
  for (const [u, m] of [["T", 1024 * 1024 * MIB], ["G", 1024 * MIB], ["M", MIB], ["K", 1024]]) {
    if (n >= m && n % m === 0) return `${n / m}${u}`;
  }
  return `${n}B`;
}

function when(ms) {
  return new Date(ms).toLocaleString();
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Calls the REST API; answers the parsed JSON (or null), throws ApiError with the server's message. */
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    if (r.status === 401 && !path.endsWith("/login")) {
      state.me = null;
      go("#/login");
    }
    throw new ApiError(r.status, (data && data.error) || `${method} ${path}: HTTP ${r.status}`);
  }
  return data;
}

function flash(message, ok = true) {
  const f = $("#flash");
  f.textContent = message;
  f.className = ok ? "ok" : "err";
  f.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { f.hidden = true; }, ok ? 4000 : 12000);
}

// `page` counts routings: a page's late answer (a fetch begun before the user moved on) may
// not draw over the page that replaced it.
const state = { me: null, cleanup: [], page: 0 };

function go(hash) {
  if (location.hash !== hash) location.hash = hash;
  else route();
}

/** Things a page opened (timers, sockets) are closed when the next page is shown. */
function onLeave(fn) { state.cleanup.push(fn); }

/** Whether the page drawn when this was called is still the one shown (after an `await`). */
function here() {
  const page = state.page;
  return () => page === state.page;
}

/** The live event stream (SSE); `onEvent` gets each new event. */
function eventStream(after, onEvent, vm) {
  const q = new URLSearchParams({ after: String(after) });
  if (vm) q.set("vm", vm);
  const es = new EventSource(`/api/events/stream?${q}`);
  es.addEventListener("vine", (m) => onEvent(JSON.parse(m.data)));
  onLeave(() => es.close());
  return es;
}

async function lastEventId() {
  const list = await api("GET", "/api/events?limit=10000");
  return list.length ? list[list.length - 1].id : 0;
}

// ----- pages -----

async function loginPage() {
  $("#top").hidden = true;
  main().innerHTML = `
    <div class="card login">
      <h1>vine</h1>
      <form id="login-form" class="stack">
        <label>User<br><input id="user" name="user" type="text" autocomplete="username" required></label>
        <label>Password<br><input id="password" name="password" type="password" autocomplete="current-password" required></label>
        <button class="primary" type="submit">Log in</button>
      </form>
      <p class="muted">The first administrator is <code>admin</code>; its password is in the data
      directory's <code>initial-admin-password</code>.</p>
    </div>`;
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/api/login", { user: $("#user").value, password: $("#password").value });
      state.me = await api("GET", "/api/me");
      go("#/vms");
    } catch (err) {
      flash(err.message, false);
    }
  });
}

/** What a state badge's tooltip says, where the word alone does not tell. */
const STATE_TIPS = {
  unknown: "host offline: the VM's state is unknown and its controls are refused until its host is back",
  maintenance: "in maintenance: keeps its VMs and gets no new ones",
  offline: "its daemon does not answer the pool (stopped, or cut off from etcd)",
};

function stateBadge(s) {
  const tip = STATE_TIPS[s] ? ` title="${esc(STATE_TIPS[s])}"` : "";
  return `<span class="state ${esc(s)}" data-state="${esc(s)}"${tip}>${esc(s)}</span>`;
}

/** The query of the current hash route (`#/vms?host=h1`). */
function query() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

/** How often pages re-read what no event announces (a VM's state on another host, a host's liveness). */
const POLL_MS = 5000;
const HOSTS_POLL_MS = 3000;

async function vmsPage() {
  const still = here();
  const hostFilter = query().get("host") || "";
  main().innerHTML = `
    <h1>Virtual machines</h1>
    <div class="card">
      <form id="host-filter" class="row" hidden><label>Host <select name="host"></select></label>
        <span class="muted" id="host-filter-note"></span></form>
      <div class="table-wrap"><table id="vm-table"><thead></thead><tbody></tbody></table></div>
      <p id="no-vms" class="muted" hidden>No virtual machines yet.</p></div>
    <div class="card" id="create-card" ${state.me.can_create || state.me.admin ? "" : "hidden"}>
      <h2>New virtual machine</h2>
      <form id="create-form" class="stack">
        <label><span>Name</span><input name="name" type="text" required pattern="[A-Za-z0-9._\\-]+"></label>
        <label><span>vCPUs</span><input name="cpus" type="number" min="1" value="1"></label>
        <label><span>Memory (256 = MiB; 512M, 2G)</span><input name="memory" type="text" value="256M" required></label>
        <label><span>Disks</span><textarea name="disks" rows="2" placeholder="/srv/web1.vhd  (one per line: PATH[,ide|scsi][,cdrom][,shared][,ro])"></textarea></label>
        <label><span>Kernel (direct boot)</span><input name="kernel" type="text" placeholder="/path/to/vmlinuz"></label>
        <label><span>Initrd</span><input name="initrd" type="text"></label>
        <label><span>Kernel command line</span><input name="append" type="text" placeholder="console=ttyS0"></label>
        <label><span>CPU weight</span><input name="cpu_weight" type="number" min="1" max="10000" placeholder="100"></label>
        <label><span>CPU reserve (%)</span><input name="cpu_reserve" type="number" min="0" placeholder="0"></label>
        <label><span>CPU max (%)</span><input name="cpu_max" type="number" min="1" placeholder="none"></label>
        <label><span>Undo disks</span><input name="undo_disks" type="checkbox"></label>
        <button class="primary" type="submit">Create</button>
      </form>
    </div>
    <div class="card" id="template-card" hidden>
      <h2>New virtual machine from a template</h2>
      <form id="template-form" class="stack">
        <label><span>Name</span><input name="name" type="text" required pattern="[A-Za-z0-9._\\-]+"></label>
        <label><span>Template</span><select name="template" required></select></label>
        <label><span>How many (NAME-1 … NAME-N)</span><input name="count" type="number" min="1" max="100" placeholder="1"></label>
        <label><span>Full copy of the base (not a linked clone)</span><input name="full" type="checkbox"></label>
        <label><span>Host name (cloud-init)</span><input name="hostname" type="text" placeholder="the VM's name"></label>
        <label><span>SSH public keys (cloud-init, one per line)</span><textarea name="ssh_keys" rows="2" placeholder="ssh-ed25519 AAAA… user@host"></textarea></label>
        <label><span>User data (cloud-init)</span><textarea name="user_data" rows="4" placeholder="#cloud-config"></textarea></label>
        <label><span>Start it</span><input name="start" type="checkbox"></label>
        <button class="primary" type="submit">Create from template</button>
      </form>
    </div>`;
  // Templates the user may use: the second form appears when there is one.
  if (state.me.can_create || state.me.admin) {
    api("GET", "/api/templates").then((ts) => {
      if (!still() || ts.length === 0) return;
      $("#template-form [name=template]").innerHTML = ts.map((t) =>
        `<option value="${esc(t.name)}">${esc(t.name)} — ${t.cpus} vCPU, ${bytes(t.memory)}${t.description ? ", " + esc(t.description) : ""}</option>`).join("");
      $("#template-card").hidden = false;
    }).catch(() => {});
  }
  // In a pool every VM carries its host: the list gets a Host column and a filter by host. On a
  // host alone no VM has one, and the list is as it always was.
  const filterForm = $("#host-filter");
  filterForm.addEventListener("change", () => {
    const h = filterForm.host.value;
    go(h ? `#/vms?host=${encodeURIComponent(h)}` : "#/vms");
  });
  filterForm.addEventListener("submit", (e) => e.preventDefault());
  let shownHead = null;
  let shownHosts = null;
  const render = async () => {
    const all = await api("GET", "/api/vms");
    if (!still()) return;
    const pooled = all.some((v) => v.host);
    // A Kind column once there are containers beside the VMs.
    const kinds = all.some((v) => v.kind === "container");
    const vms = hostFilter ? all.filter((v) => v.host === hostFilter) : all;
    const head = `<tr><th>Name</th>${kinds ? "<th>Kind</th>" : ""}${pooled ? "<th>Host</th>" : ""}<th>State</th><th>vCPUs</th>
      <th>Memory</th><th>CPU weight / reserve / max</th><th>Disks</th><th>PID</th></tr>`;
    if (head !== shownHead) $("#vm-table thead").innerHTML = shownHead = head;
    filterForm.hidden = !pooled && !hostFilter;
    const hosts = [...new Set(all.map((v) => v.host).filter(Boolean).concat(hostFilter ? [hostFilter] : []))].sort();
    if (hosts.join("\n") !== shownHosts) {
      shownHosts = hosts.join("\n");
      filterForm.host.innerHTML = `<option value="">all hosts</option>` +
        hosts.map((h) => `<option value="${esc(h)}"${h === hostFilter ? " selected" : ""}>${esc(h)}</option>`).join("");
    }
    $("#host-filter-note").textContent = hostFilter ? `${vms.length} of ${all.length} virtual machines` : "";
    const none = $("#no-vms");
    none.hidden = vms.length > 0;
    none.textContent = hostFilter ? `No virtual machines on host ${hostFilter}.` : "No virtual machines yet.";
    $("#vm-table tbody").innerHTML = vms.map((v) => `
      <tr data-vm="${esc(v.name)}" data-kind="${esc(v.kind ?? "vm")}"${v.state === "unknown" ? ' class="unknown"' : ""}><td><a href="#/vm/${encodeURIComponent(v.name)}">${esc(v.name)}</a></td>
      ${kinds ? `<td>${v.kind === "container" ? "container" : "VM"}</td>` : ""}
      ${pooled ? `<td data-host="${esc(v.host ?? "")}">${v.host ? `<a href="#/vms?host=${encodeURIComponent(v.host)}" title="only the VMs of ${esc(v.host)}">${esc(v.host)}</a>` : ""}</td>` : ""}
      <td>${stateBadge(v.state)}</td><td>${v.cpus}</td><td>${bytes(v.memory)}</td>
      <td>${v.cpu.weight} / ${v.cpu.reserve}% / ${v.cpu.max == null ? "none" : v.cpu.max + "%"}</td>
      <td>${v.container ? `image ${esc(v.container.image)}` : v.disks.map(esc).join("<br>")}</td><td>${v.pid ?? ""}</td></tr>`).join("");
  };
  await render();
  const from = await lastEventId();
  if (!still()) return;
  // Live: any event may change a state; a slow poll covers the rest (and other hosts' VMs).
  eventStream(from, () => render().catch(() => {}));
  const t = setInterval(() => render().catch(() => {}), POLL_MS);
  onLeave(() => clearInterval(t));
  templateFormSubmit();
  $("#create-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const num = (k) => (f.get(k) === "" || f.get(k) == null ? undefined : Number(f.get(k)));
    const str = (k) => (String(f.get(k) || "").trim() || undefined);
    const disks = String(f.get("disks") || "").split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
      const [path, ...opts] = l.split(",").map((s) => s.trim());
      const d = { path };
      for (const o of opts) {
        if (o === "ide" || o === "scsi" || o === "virtio") d.bus = o;
        else if (o === "cdrom") d.cdrom = true;
        else if (o === "shared") d.shared = true;
        else if (o === "ro") d.read_only = true;
      }
      return d;
    });
    let memory;
    try {
      memory = parseSize(f.get("memory"), MIB, "memory");
    } catch (err) {
      flash(err.message, false);
      return;
    }
    const body = {
      name: str("name"), cpus: num("cpus"), memory, disks,
      kernel: str("kernel"), initrd: str("initrd"), append: str("append"),
      cpu_weight: num("cpu_weight"), cpu_reserve: num("cpu_reserve"), cpu_max: num("cpu_max"),
      undo_disks: f.get("undo_disks") === "on",
    };
    try {
      await api("POST", "/api/vms", body);
      flash(`created '${body.name}'`);
      go(`#/vm/${encodeURIComponent(body.name)}`);
    } catch (err) {
      flash(err.message, false);
    }
  });
}

// The "from a template" form: one POST /api/vms makes (and starts) the VM(s), configured at
// first boot by cloud-init when any of its fields is filled.
function templateFormSubmit() {
  $("#template-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const str = (k) => (String(f.get(k) || "").trim() || undefined);
    const keys = String(f.get("ssh_keys") || "").split("\n").map((l) => l.trim()).filter(Boolean);
    const body = { name: str("name"), template: str("template"), full: f.get("full") === "on", start: f.get("start") === "on" };
    if (str("count")) body.count = Number(f.get("count"));
    if (str("hostname") || keys.length || str("user_data")) {
      body.cloud_init = { hostname: str("hostname"), ssh_keys: keys, user_data: f.get("user_data") ? String(f.get("user_data")) : undefined };
    }
    try {
      await api("POST", "/api/vms", body);
      flash(body.count ? `created ${body.count} VMs from '${body.template}'` : `created '${body.name}' from '${body.template}'`);
      go(body.count ? "#/vms" : `#/vm/${encodeURIComponent(body.name)}`);
    } catch (err) {
      flash(err.message, false);
    }
  });
}

const CONTROLS = [
  ["start", "Start"], ["pause", "Pause"], ["resume", "Resume"], ["save", "Save state"],
  ["restore", "Restore"], ["discard-state", "Discard saved state"], ["shutdown", "Shut down"],
  ["off", "Turn off"], ["reset", "Reset"],
];

/** Which controls make sense in a state (the daemon decides; this only greys out the rest). */
function allowed(control, s) {
  const ok = {
    off: ["start"], crashed: ["start"], saved: ["restore", "discard-state"],
    running: ["pause", "save", "shutdown", "off", "reset"], paused: ["resume", "save", "off", "reset"],
  }[s] || [];
  return ok.includes(control);
}

async function vmPage(name) {
  const still = here();
  const enc = encodeURIComponent(name);
  main().innerHTML = `
    <h1><a href="#/vms">Virtual machines</a> › <span id="vm-name">${esc(name)}</span> <span id="vm-state"></span></h1>
    <div class="card"><h2>Controls</h2>
      <div class="controls" id="controls">
        ${CONTROLS.map(([c, label]) => `<button data-control="${c}">${label}</button>`).join("")}
        <button data-remove class="danger" title="Unregister; files are kept">Remove</button>
        <button data-delete class="danger" title="Unregister and delete its files and disks">Delete</button>
      </div>
      <p id="host-offline" class="level-warning" hidden></p>
      <p id="last-error" class="level-error" hidden></p>
    </div>
    <div class="card" id="migrate-card" hidden><h2>Live migration</h2>
      <div class="row"><label>To host <select id="migrate-to"></select></label>
        <button id="migrate-go" class="primary" disabled>Migrate</button>
        <button id="migrate-cancel" hidden>Cancel</button></div>
      <p class="muted" id="migrate-progress"></p></div>
    <div class="grid">
      <div class="card"><h2>Configuration</h2><dl class="kv" id="config"></dl></div>
      <div class="card"><h2>Resource controls</h2>
        <form id="set-form" class="stack">
          <label><span>CPU weight (1–10000)</span><input name="cpu_weight" type="number" min="1" max="10000"></label>
          <label><span>CPU reserve (% of a CPU)</span><input name="cpu_reserve" type="number" min="0"></label>
          <label><span>CPU max (%, empty: none)</span><input name="cpu_max" type="number" min="1"></label>
          <label><span>Memory (next start; 256 = MiB; 2G)</span><input name="memory" type="text"></label>
          <label id="ha-field" hidden><span>HA: restart on another host if its host dies (disks on shared pools)</span><input name="ha" type="checkbox"></label>
          <button class="primary" type="submit">Apply</button>
        </form>
      </div>
    </div>
    <div class="grid">
      <div class="card"><h2>CPU <span class="muted" id="cpu-now"></span></h2><canvas id="cpu-graph" class="graph"></canvas></div>
      <div class="card"><h2>Memory <span class="muted" id="mem-now"></span></h2><canvas id="mem-graph" class="graph"></canvas></div>
    </div>
    <div class="card"><h2>Serial console <span class="muted" id="console-status"></span></h2><div id="terminal"></div></div>
    <div class="card" id="vnc-card"><h2>Graphical console</h2>
      <div class="row"><button id="vnc-connect">Connect</button><span class="muted" id="vnc-status">not connected</span></div>
      <div id="vnc" hidden></div></div>
    <div class="card"><h2>Events</h2><table id="vm-events"><thead><tr><th>Time</th><th>Level</th><th>Kind</th><th>Message</th></tr></thead><tbody></tbody></table></div>`;

  let vm = null;
  let migrating = false;
  const render = async () => {
    vm = await api("GET", `/api/vms/${enc}`);
    if (!still()) return;
    $("#vm-state").innerHTML = stateBadge(vm.state);
    for (const b of document.querySelectorAll("#controls [data-control]")) b.disabled = !allowed(b.dataset.control, vm.state);
    const off = $("#host-offline");
    off.hidden = vm.state !== "unknown";
    off.textContent = vm.state === "unknown"
      ? `Host ${vm.host || "?"} is offline: this VM's state is unknown and its controls are refused until the host is back.` : "";
    const le = $("#last-error");
    le.hidden = !vm.last_error;
    le.textContent = vm.last_error || "";
    const ct = vm.container;
    // A container has no graphical console, and it moves cold only.
    $("#vnc-card").hidden = !!ct;
    const rows = [
      ["Kind", ct ? "container (LXC)" : "virtual machine"],
      ["State", vm.state], ...(vm.host ? [["Host", vm.host]] : []), ["UUID", vm.uuid],
      [ct ? "CPUs" : "vCPUs", vm.cpus], [ct ? "Memory limit" : "Memory", bytes(vm.memory)],
      ...(ct ? [["Image", ct.image], ["Root file system", ct.rootfs], ["Host ids", `${ct.id_base}–${ct.id_base + 65535}`]]
        : [["Disks", vm.disks.length ? vm.disks.join(", ") : "none"]]),
      ["NICs", (vm.nics && vm.nics.length) ? vm.nics.map((n) => n.mac || JSON.stringify(n)).join(", ") : "none"],
      ["CPU weight", vm.cpu.weight], ["CPU reserve", `${vm.cpu.reserve}%`],
      ["CPU max", vm.cpu.max == null ? "none" : `${vm.cpu.max}%`], ...(ct ? [] : [["Undo disks", vm.undo_disks ? "on" : "off"]]),
      ...(vm.host && !ct ? [["HA", vm.ha ? "on" : "off"]] : []),
      ["Saved state", vm.saved_state ? "yes" : "no"], [ct ? "Init pid" : "QEMU pid", vm.pid ?? "—"],
      ["CPU time", vm.cpu_time_ns == null ? "—" : `${(vm.cpu_time_ns / 1e9).toFixed(1)} s`],
      ["Definition file", vm.definition_file],
    ];
    $("#config").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
    // In a pool, a running or paused VM can go to another host live.
    const mc = $("#migrate-card");
    if (vm.host) {
      const sel = $("#migrate-to");
      const hosts = await api("GET", "/api/hosts").catch(() => []);
      if (!still()) return;
      const others = hosts.filter((h) => h.name !== vm.host && h.state === "online").map((h) => h.name);
      if (sel.dataset.hosts !== others.join(",")) {
        sel.innerHTML = others.map((h) => `<option value="${esc(h)}">${esc(h)}</option>`).join("");
        sel.dataset.hosts = others.join(",");
      }
      if (!migrating) $("#migrate-go").disabled = !others.length || !!vm.container || !["running", "paused"].includes(vm.state);
    }
    // Shown only once its button says whether this VM can go now.
    mc.hidden = !vm.host;
    const form = $("#set-form");
    if (!form.dataset.filled) {
      form.cpu_weight.value = vm.cpu.weight;
      form.cpu_reserve.value = vm.cpu.reserve;
      form.cpu_max.value = vm.cpu.max ?? "";
      form.memory.value = sizeText(vm.memory);
      form.ha.checked = !!vm.ha;
      $("#ha-field").hidden = !vm.host; // HA is a pool's
      form.dataset.filled = "1";
    }
  };
  try {
    await render();
  } catch (err) {
    if (still()) main().innerHTML = `<p class="level-error">${esc(err.message)}</p>`;
    return;
  }
  if (!still()) return;

  for (const b of document.querySelectorAll("#controls [data-control]")) {
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        const r = await api("POST", `/api/vms/${enc}/actions/${b.dataset.control}`);
        flash(r && r.message ? r.message : `${b.dataset.control}: done`);
      } catch (err) {
        flash(err.message, false);
      }
      await render().catch(() => {});
    });
  }
  // A live migration: the request answers when it has ended; meanwhile its progress is read
  // twice a second.
  const showProgress = (p) => {
    const mib = (b) => `${Math.round((b || 0) / 1048576)} MiB`;
    let t = `${p.phase} to ${p.to}, ${(p.elapsed_ms / 1000).toFixed(1)} s`;
    if (p.disk_total) t += ` · disk ${mib(p.disk_transferred)} of ${mib(p.disk_total)}`;
    if (p.ram_total) t += ` · memory sent ${mib(p.ram_transferred)}, ${mib(p.ram_remaining)} left, dirtied ${mib(p.dirty_rate)}/s`;
    if (p.expected_downtime_ms != null) t += ` · expected downtime ${p.expected_downtime_ms} ms`;
    if (p.cpu_throttle_pct != null) t += ` · guest slowed ${p.cpu_throttle_pct}%`;
    $("#migrate-progress").textContent = t;
  };
  $("#migrate-go").addEventListener("click", async () => {
    const to = $("#migrate-to").value;
    if (!to) return;
    migrating = true;
    $("#migrate-go").disabled = true;
    $("#migrate-cancel").hidden = false;
    $("#migrate-progress").textContent = `migrating to ${to}…`;
    const timer = setInterval(async () => {
      const p = await api("GET", `/api/vms/${enc}/migration`).catch(() => null);
      if (p && migrating) showProgress(p);
    }, 500);
    try {
      const r = await api("POST", `/api/vms/${enc}/migrate`, { to });
      $("#migrate-progress").textContent = r.message;
      flash(r.message);
    } catch (err) {
      $("#migrate-progress").textContent = err.message;
      flash(err.message, false);
    } finally {
      migrating = false;
      clearInterval(timer);
      $("#migrate-cancel").hidden = true;
    }
    await render().catch(() => {});
  });
  $("#migrate-cancel").addEventListener("click", async () => {
    try {
      const r = await api("DELETE", `/api/vms/${enc}/migration`);
      flash(r.message);
    } catch (err) {
      flash(err.message, false);
    }
  });
  const drop = async (keep) => {
    if (!confirm(keep ? `Remove '${name}'? Its files stay.` : `Delete '${name}' and its files?`)) return;
    try {
      await api("DELETE", `/api/vms/${enc}${keep ? "?keep_files=true" : ""}`);
      flash(`${keep ? "removed" : "deleted"} '${name}'`);
      go("#/vms");
    } catch (err) {
      flash(err.message, false);
    }
  };
  $("[data-remove]").addEventListener("click", () => drop(true));
  $("[data-delete]").addEventListener("click", () => drop(false));

  $("#set-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    const changes = {
      cpu_weight: Number(f.cpu_weight.value), cpu_reserve: Number(f.cpu_reserve.value),
    };
    try {
      changes.memory = parseSize(f.memory.value, MIB, "memory");
    } catch (err) {
      flash(err.message, false);
      return;
    }
    if (f.cpu_max.value === "") changes.no_cpu_max = true;
    else changes.cpu_max = Number(f.cpu_max.value);
    if (!$("#ha-field").hidden) changes.ha = f.ha.checked;
    try {
      await api("PATCH", `/api/vms/${enc}`, changes);
      flash(`changed '${name}'`);
      await render();
    } catch (err) {
      flash(err.message, false);
    }
  });

  // Events of this VM, live; each also refreshes the state.
  const evBody = $("#vm-events tbody");
  const addEvent = (e) => {
    evBody.insertAdjacentHTML("afterbegin", `<tr><td>${esc(when(e.time_ms))}</td><td class="level-${esc(e.level)}">${esc(e.level)}</td><td>${esc(e.kind)}</td><td>${esc(e.message)}</td></tr>`);
    while (evBody.rows.length > 50) evBody.deleteRow(-1);
  };
  const past = await api("GET", `/api/events?vm=${enc}&limit=10000`);
  if (!still()) return;
  past.slice(-50).forEach(addEvent);
  eventStream(past.length ? past[past.length - 1].id : 0, (e) => { addEvent(e); render().catch(() => {}); }, name);
  const poll = setInterval(() => render().catch(() => {}), POLL_MS);
  onLeave(() => clearInterval(poll));

  // In a pool, the consoles of another host's VM are relayed by this host from its owner; the
  // CPU graphs are sampled by each host for its own VMs, so they are on the owner's site.
  const owner = await ownerElsewhere(vm);
  if (!still()) return;
  if (owner) {
    const site = owner.url ? ` <a href="${esc(owner.url)}/#/vm/${enc}">Open it on ${esc(owner.name)}</a>.` : "";
    for (const id of ["#cpu-now", "#mem-now"]) $(id).textContent = `(on host ${owner.name})`;
    $("#cpu-now").insertAdjacentHTML("afterend", `<p class="muted" id="graphs-elsewhere">Its graphs are on its host's site.${site}</p>`);
  } else {
    graphs(name);
  }
  if (vm.state === "unknown") {
    // Its host is offline: no console can be reached until it is back.
    $("#terminal").outerHTML = `<p class="muted" id="terminal-offline">Its host ${esc(vm.host)} is offline: no console until it is back.</p>`;
    $("#vnc-connect").disabled = true;
    return;
  }
  serialConsole(name);
  $("#vnc-connect").addEventListener("click", () => graphicalConsole(name));
}

/** The pool host that owns `vm` (`{name, url}`) when that is not this host; null otherwise. */
async function ownerElsewhere(vm) {
  if (!vm.host) return null;
  const [pool, hosts] = await Promise.all([api("GET", "/api/cluster"), api("GET", "/api/hosts")]);
  if (pool.this_host === vm.host) return null;
  return hosts.find((h) => h.name === vm.host) || { name: vm.host, url: "" };
}

/** CPU utilisation (from /api/metrics/live, sampled by the daemon every --sample-interval s) and memory. */
function graphs(name) {
  const cpu = $("#cpu-graph");
  const mem = $("#mem-graph");
  const draw = (canvas, values, max, label) => {
    const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
    const h = (canvas.height = canvas.clientHeight * devicePixelRatio);
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#e3e6ea";
    for (let i = 1; i < 4; i++) { g.beginPath(); g.moveTo(0, (h * i) / 4); g.lineTo(w, (h * i) / 4); g.stroke(); }
    g.fillStyle = "#687385";
    g.font = `${11 * devicePixelRatio}px system-ui`;
    g.fillText(label, 6 * devicePixelRatio, 14 * devicePixelRatio);
    if (values.length < 1) return;
    const n = Math.max(values.length, 30);
    const x = (i) => w - ((values.length - 1 - i) * w) / (n - 1);
    const y = (v) => h - (Math.min(v, max) / max) * (h - 20 * devicePixelRatio) - 2;
    g.beginPath();
    values.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.strokeStyle = "#2f6f3e";
    g.lineWidth = 2 * devicePixelRatio;
    g.stroke();
  };
  const memSeries = [];
  const tick = async () => {
    let m;
    try {
      m = await api("GET", "/api/metrics/live");
    } catch (err) {
      $("#cpu-now").textContent = err.status === 403 ? "(graphs need an administrator)" : err.message;
      return;
    }
    const v = (m.vms || []).find((x) => x.name === name);
    const hist = v ? [...v.history].reverse() : [];
    const pct = hist.map((u) => u * 100);
    $("#cpu-now").textContent = v ? `${pct.length ? pct[pct.length - 1].toFixed(1) : "…"} % of ${v.vcpus} vCPU(s), every ${m.interval_s} s` : "(not running)";
    draw(cpu, pct, 100, "% of its vCPUs");
    memSeries.push(v ? v.memory : 0);
    if (memSeries.length > 30) memSeries.shift();
    $("#mem-now").textContent = v ? `${bytes(v.memory)} given to the guest` : "(not running)";
    const host = m.host ? m.host.memory_bytes : 1;
    draw(mem, memSeries.map((b) => (b / host) * 100), 100, `% of host memory (${bytes(host)})`);
  };
  tick();
  const t = setInterval(tick, 2000);
  onLeave(() => clearInterval(t));
}

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

/**
 * The one xterm.js terminal of the app, made on first use and moved between VM pages.
 * Disposing a terminal races its own animation-frame callbacks (they read a renderer that is
 * gone and throw), so the terminal is never disposed: a page that leaves parks it, hidden.
 */
let consoleTerm;
function appTerminal(box) {
  if (!consoleTerm) {
    const { Terminal, FitAddon } = window.VineVendor;
    const term = new Terminal({ convertEol: true, scrollback: 5000, fontSize: 13, cursorBlink: true });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box);
    const park = document.createElement("div");
    park.hidden = true;
    document.body.append(park);
    consoleTerm = { term, fit, park };
  } else {
    box.append(consoleTerm.term.element);
    consoleTerm.term.reset();
  }
  consoleTerm.fit.fit();
  return consoleTerm;
}

/** The serial console: xterm.js over /api/vms/{name}/console/ws. */
function serialConsole(name) {
  const { term, fit, park } = appTerminal($("#terminal"));
  window.vineTerminal = term; // the end-to-end test reads the terminal's buffer
  const status = $("#console-status");
  let ws;
  let closed = false;
  const connect = () => {
    ws = new WebSocket(wsUrl(`/api/vms/${encodeURIComponent(name)}/console/ws`));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { status.textContent = "(attached)"; };
    ws.onmessage = (m) => { if (!closed) term.write(new Uint8Array(m.data)); };
    ws.onclose = () => {
      status.textContent = "(detached)";
      if (!closed) setTimeout(connect, 2000);
    };
  };
  connect();
  const enc = new TextEncoder();
  const typing = term.onData((d) => { if (!closed && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d)); });
  const onResize = () => fit.fit();
  addEventListener("resize", onResize);
  onLeave(() => {
    closed = true;
    ws.close();
    typing.dispose();
    removeEventListener("resize", onResize);
    park.append(term.element);
    delete window.vineTerminal;
  });
}

/** The graphical console: noVNC over /api/vms/{name}/vnc/ws. */
function graphicalConsole(name) {
  const { RFB } = window.VineVendor;
  const box = $("#vnc");
  box.hidden = false;
  box.innerHTML = "";
  const status = $("#vnc-status");
  status.textContent = "connecting…";
  const rfb = new RFB(box, wsUrl(`/api/vms/${encodeURIComponent(name)}/vnc/ws`), { wsProtocols: ["binary"] });
  rfb.scaleViewport = true;
  rfb.addEventListener("connect", () => { status.textContent = "connected"; });
  let open = true;
  rfb.addEventListener("disconnect", (e) => {
    open = false;
    status.textContent = e.detail.clean ? "disconnected" : "connection failed (is the VM running?)";
  });
  onLeave(() => { if (open) rfb.disconnect(); });
}

async function eventsPage() {
  const still = here();
  const vm = query().get("vm") || "";
  main().innerHTML = `
    <h1>Event log</h1>
    <div class="card">
      <form id="filter" class="row"><label>VM <input name="vm" type="text" value="${esc(vm)}"></label><button>Filter</button>
      <span class="muted">newest first; new events appear as they happen</span></form>
    </div>
    <div class="card"><div class="table-wrap"><table id="events"><thead></thead><tbody></tbody></table></div></div>`;
  $("#filter").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = e.target.vm.value.trim();
    go(v ? `#/events?vm=${encodeURIComponent(v)}` : "#/events");
  });
  const body = $("#events tbody");
  const past = await api("GET", `/api/events?limit=10000${vm ? `&vm=${encodeURIComponent(vm)}` : ""}`);
  if (!still()) return;
  // A pool's log names the host of each event: a Host column then (a host alone has none).
  const withHost = past.some((e) => e.host);
  $("#events thead").innerHTML = `<tr><th>#</th><th>Time</th><th>VM</th>${withHost ? "<th>Host</th>" : ""}<th>Level</th><th>Kind</th><th>Message</th></tr>`;
  const add = (e) => {
    // The first event naming a host (this host just joined a pool): draw the page again with the column.
    if (e.host && !withHost) return route();
    body.insertAdjacentHTML("afterbegin", `<tr data-kind="${esc(e.kind)}"><td>${e.id}</td><td>${esc(when(e.time_ms))}</td>
    <td>${e.vm ? `<a href="#/vm/${encodeURIComponent(e.vm)}">${esc(e.vm)}</a>` : ""}</td>
    ${withHost ? `<td data-host="${esc(e.host ?? "")}">${esc(e.host ?? "")}</td>` : ""}
    <td class="level-${esc(e.level)}">${esc(e.level)}</td><td>${esc(e.kind)}</td><td>${esc(e.message)}</td></tr>`);
  };
  past.slice(-500).forEach(add);
  eventStream(past.length ? past[past.length - 1].id : 0, add, vm || undefined);
}

async function usersPage() {
  const still = here();
  if (!state.me.admin) {
    main().innerHTML = `<p class="level-error">Only administrators manage users.</p>`;
    return;
  }
  main().innerHTML = `
    <h1>Users</h1>
    <div class="grid">
      <div class="card"><h2>Users</h2><table id="users"><thead><tr><th>Name</th><th>Administrator</th><th>May create VMs</th><th></th></tr></thead><tbody></tbody></table></div>
      <div class="card"><h2>New user</h2>
        <form id="user-form" class="stack">
          <label><span>Name</span><input name="name" type="text" required></label>
          <label><span>Password (8+)</span><input name="password" type="password" minlength="8" required></label>
          <label><span>Administrator</span><input name="admin" type="checkbox"></label>
          <label><span>May create VMs</span><input name="can_create" type="checkbox"></label>
          <button class="primary">Add user</button>
        </form></div>
    </div>
    <div class="grid">
      <div class="card"><h2>Rights</h2><table id="acl"><thead><tr><th>User</th><th>On</th><th>Right</th><th></th></tr></thead><tbody></tbody></table></div>
      <div class="card"><h2>Grant a right</h2>
        <form id="grant-form" class="stack">
          <label><span>User</span><input name="user" type="text" required></label>
          <label><span>On a</span><select name="kind"><option value="vm">VM</option><option value="pool">storage pool</option><option value="network">network</option></select></label>
          <label><span>Named</span><input name="object" type="text" required></label>
          <label><span>Right</span><select name="right"><option value="use">use (VM: console, power; pool: its volumes; network: NICs)</option><option value="configure">configure (VMs)</option></select></label>
          <button class="primary">Grant</button>
        </form></div>
    </div>`;
  const render = async () => {
    const [users, acl] = await Promise.all([api("GET", "/api/users"), api("GET", "/api/acl")]);
    if (!still()) return;
    $("#users tbody").innerHTML = users.map((u) => `<tr><td>${esc(u.name)}</td><td>${u.admin ? "yes" : ""}</td><td>${u.can_create ? "yes" : ""}</td>
      <td>${u.name === state.me.user ? "" : `<button class="danger" data-user="${esc(u.name)}">Delete</button>`}</td></tr>`).join("");
    const on = (r) => r.vm !== undefined ? `VM ${r.vm}` : r.pool !== undefined ? `storage pool ${r.pool}` : `network ${r.network}`;
    $("#acl tbody").innerHTML = acl.map((r) => `<tr><td>${esc(r.user)}</td><td>${esc(on(r))}</td><td>${esc(r.right)}</td>
      <td><button data-revoke="${esc(JSON.stringify(r))}">Revoke</button></td></tr>`).join("");
    for (const b of document.querySelectorAll("[data-user]")) {
      b.addEventListener("click", async () => {
        if (!confirm(`Delete user '${b.dataset.user}'?`)) return;
        try { await api("DELETE", `/api/users/${encodeURIComponent(b.dataset.user)}`); flash("deleted"); } catch (err) { flash(err.message, false); }
        render();
      });
    }
    for (const b of document.querySelectorAll("[data-revoke]")) {
      b.addEventListener("click", async () => {
        const r = JSON.parse(b.dataset.revoke);
        const object = r.vm !== undefined ? encodeURIComponent(r.vm)
          : r.pool !== undefined ? `pools/${encodeURIComponent(r.pool)}` : `networks/${encodeURIComponent(r.network)}`;
        try { await api("DELETE", `/api/acl/${encodeURIComponent(r.user)}/${object}/${encodeURIComponent(r.right)}`); flash("revoked"); } catch (err) { flash(err.message, false); }
        render();
      });
    }
  };
  await render();
  if (!still()) return;
  $("#user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      await api("POST", "/api/users", { name: f.elements["name"].value, password: f.password.value, admin: f.admin.checked, can_create: f.can_create.checked });
      flash(`added '${f.elements["name"].value}'`);
      f.reset();
      await render();
    } catch (err) { flash(err.message, false); }
  });
  $("#grant-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      await api("POST", "/api/acl", { user: f.user.value, [f.kind.value]: f.object.value, right: f.right.value });
      flash("granted");
      await render();
    } catch (err) { flash(err.message, false); }
  });
}

/**
 * The pool's hosts (`GET /api/hosts`; a host alone lists itself), each with what its VMs reserve,
 * added up from `GET /api/vms`: the memory of all its VMs and their CPU reservations, as
 * placement counts them. Administrators put a host in maintenance and take it out.
 */
async function hostsPage() {
  const still = here();
  main().innerHTML = `
    <h1>Hosts</h1>
    <div class="card">
      <div class="table-wrap"><table id="host-table"><thead><tr><th>Name</th><th>State</th><th>CPUs</th><th>Memory</th>
        <th>Memory reserved</th><th>CPU reserved</th><th>VMs</th><th>Accelerator</th><th>Version</th>
        <th data-maintenance-col hidden>Maintenance</th></tr></thead><tbody></tbody></table></div>
      <p class="muted">Reservations and VM counts add up the virtual machines you may see: their memory, and
      their CPU reserves in CPUs. A name shows its host's VMs.</p>
    </div>`;
  const body = $("#host-table tbody");
  const render = async () => {
    const [hosts, vms] = await Promise.all([api("GET", "/api/hosts"), api("GET", "/api/vms")]);
    if (!still()) return;
    // In a pool VMs name their host; a host alone lists itself and owns every VM. Maintenance is
    // a pool's: its toggle is shown to administrators when there is a pool.
    const pooled = hosts.length > 1 || vms.some((v) => v.host);
    const alone = hosts.length === 1 && !pooled ? hosts[0].name : null;
    const toggle = state.me.admin && pooled;
    $("[data-maintenance-col]").hidden = !toggle;
    body.innerHTML = hosts.map((h) => {
      const mine = vms.filter((v) => (v.host ?? alone) === h.name);
      const memory = mine.reduce((a, v) => a + v.memory, 0);
      const reserve = mine.reduce((a, v) => a + v.cpu.reserve, 0) / 100;
      const running = mine.filter((v) => v.state === "running").length;
      const pct = h.memory_bytes ? Math.round((memory / h.memory_bytes) * 100) : 0;
      const link = pooled ? `#/vms?host=${encodeURIComponent(h.name)}` : "#/vms";
      const verb = h.maintenance ? "End maintenance" : "Start maintenance";
      return `<tr data-host="${esc(h.name)}">
        <th scope="row"><a href="${link}" title="the VMs of ${esc(h.name)}">${esc(h.name)}</a></th>
        <td>${stateBadge(h.state)}</td><td data-cpus>${h.cpus}</td><td>${bytes(h.memory_bytes)}</td>
        <td>${bytes(memory)} (${pct}%)</td><td>${+reserve.toFixed(2)} of ${h.cpus}</td>
        <td data-vms>${mine.length}${running ? ` (${running} running)` : ""}</td>
        <td>${esc(h.accelerator)}</td><td>${esc(h.version)}</td>
        ${toggle ? `<td><button data-maintenance="${esc(h.name)}" data-on="${!h.maintenance}"
          aria-label="${verb} on ${esc(h.name)}">${verb}</button></td>` : ""}</tr>`;
    }).join("");
  };
  await render();
  if (!still()) return;
  // Buttons are drawn again at each refresh: one listener on the table serves them all.
  body.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-maintenance]");
    if (!b) return;
    b.disabled = true;
    const name = b.dataset.maintenance;
    try {
      const r = await api("PUT", `/api/hosts/${encodeURIComponent(name)}/maintenance`, { maintenance: b.dataset.on === "true" });
      flash(r && r.message ? r.message : `${name}: done`);
    } catch (err) {
      flash(err.message, false);
    }
    await render().catch(() => {});
  });
  // Events (a VM started, a host put in maintenance) redraw at once; liveness has no event, so
  // the page also polls, faster than the VM list: a host that stops is offline within ~10 s.
  const from = await lastEventId();
  if (!still()) return;
  eventStream(from, () => render().catch(() => {}));
  const t = setInterval(() => render().catch(() => {}), HOSTS_POLL_MS);
  onLeave(() => clearInterval(t));
}

/**
 * The pool's policy engine (`GET /api/policy`, administrators): how far it acts, the policy,
 * the coordinator, and what its last round advised or did, with the reasons. The mode is set
 * here (`PUT /api/policy`); the page follows each round.
 */
async function policyPage() {
  const still = here();
  main().innerHTML = `
    <h1>Policy engine</h1>
    <div class="card"><h2>Automation</h2>
      <form id="mode-form" class="row"><label>Mode <select name="mode">
        <option value="off">off: it does not plan</option>
        <option value="advise">advise: it plans and records advice, changes nothing</option>
        <option value="automatic">automatic: it carries its plans out</option></select></label>
        <button class="primary">Apply</button></form>
      <dl class="kv" id="policy-settings"></dl></div>
    <div class="card"><h2>Last round <span class="muted" id="round-when"></span></h2>
      <div class="table-wrap"><table id="round"><thead><tr><th>Outcome</th><th>Action</th><th>Why</th></tr></thead>
      <tbody></tbody></table></div>
      <p class="muted" id="round-none" hidden>No round yet: the engine plans once its mode is advise or automatic.</p>
      <ul id="held-back" class="muted"></ul></div>`;
  const form = $("#mode-form");
  const render = async () => {
    const p = await api("GET", "/api/policy");
    if (!still()) return;
    if (!form.dataset.filled) {
      form.mode.value = p.mode;
      form.dataset.filled = "1";
    }
    const rows = [["Mode", p.mode], ["Policy", p.policy], ["Coordinator", p.coordinator || "none now"],
      ["Interval", `${p.interval_s} s`], ["Threshold", `${p.threshold} of 5`], ["Parallel migrations", p.parallel],
      ["Power program", p.power_program || "none (standby is a state only)"]];
    $("#policy-settings").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd data-key="${esc(k)}">${esc(v)}</dd>`).join("");
    const r = p.last_round;
    $("#round-none").hidden = !!r;
    $("#round-when").textContent = r ? `round ${r.round} on ${r.host}, ${when(r.at_ms)}, mode ${r.mode}` : "";
    $("#round tbody").innerHTML = (r ? r.actions : []).map((a) => `<tr data-outcome="${esc(a.outcome)}">
      <td>${esc(a.outcome)}</td><td>${esc(a.text)}</td><td>${esc(a.why)}</td></tr>`).join("")
      || (r ? `<tr><td colspan="3" class="muted">nothing to do</td></tr>` : "");
    $("#held-back").innerHTML = (r ? r.held_back : []).map((h) => `<li>held back: ${esc(h)}</li>`).join("");
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("PUT", "/api/policy", { mode: form.mode.value });
      flash(r && r.message ? r.message : "done");
    } catch (err) {
      flash(err.message, false);
    }
    await render().catch(() => {});
  });
  await render();
  if (!still()) return;
  const t = setInterval(() => render().catch(() => {}), HOSTS_POLL_MS);
  onLeave(() => clearInterval(t));
}

async function hostPage() {
  const still = here();
  const h = await api("GET", "/api/host");
  if (!still()) return;
  main().innerHTML = `<h1>This host</h1><div class="card"><pre>${esc(JSON.stringify(h, null, 2))}</pre></div>`;
}

// ----- routing -----

async function route() {
  const page = ++state.page;
  for (const f of state.cleanup.splice(0)) {
    try { f(); } catch { /* best effort */ }
  }
  const hash = location.hash || "#/vms";
  const [path] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "login") return loginPage();
  if (!state.me) {
    try {
      state.me = await api("GET", "/api/me");
    } catch {
      return; // api() went to the login page
    }
  }
  $("#top").hidden = false;
  $("#who").textContent = state.me.user;
  for (const a of document.querySelectorAll("[data-admin]")) a.hidden = !state.me.admin;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === parts[0] || (parts[0] === "vm" && a.dataset.nav === "vms"));
  try {
    switch (parts[0]) {
      case "vm": return await vmPage(decodeURIComponent(parts[1] || ""));
      case "hosts": return await hostsPage();
      case "events": return await eventsPage();
      case "users": return await usersPage();
      case "policy": return await policyPage();
      case "host": return await hostPage();
      default: return await vmsPage();
    }
  } catch (err) {
    if (err.status !== 401 && page === state.page) main().innerHTML = `<p class="level-error">${esc(err.message)}</p>`;
  }
}

addEventListener("hashchange", route);
addEventListener("DOMContentLoaded", () => {
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/api/logout"); } catch { /* already logged out */ }
    state.me = null;
    go("#/login");
  });
  route();
});
