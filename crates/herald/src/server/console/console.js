// Herald's console: live refresh, lifecycle buttons, the new-campaign form and the CSV
// upload. Everything goes through the JSON API under /v1 with the session cookie; what
// changes something carries the page's CSRF token.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf"]')?.content || "";

async function api(method, path, body, type) {
  const headers = { "X-Herald-CSRF": csrf() };
  if (type) headers["Content-Type"] = type;
  const r = await fetch(path, { method, headers, body, credentials: "same-origin" });
  const text = await r.text();
  let data = null;
  try { data = JSON.parse(text); } catch (_) { data = text; }
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : `${r.status} ${text}`;
    throw new Error(msg);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// ---- Live parts: fetch the page again and swap #live in. ----
const samples = [];

function sample(live) {
  const n = Number(live.dataset.accepted);
  if (!Number.isFinite(n)) return;
  samples.push([performance.now() / 1000, n]);
  if (samples.length > 240) samples.shift();
  drawChart();
}

function drawChart() {
  const svg = document.getElementById("chart");
  if (!svg || samples.length < 2) return;
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i][0] - samples[i - 1][0];
    rates.push(dt > 0 ? (samples[i][1] - samples[i - 1][1]) / dt : 0);
  }
  const max = Math.max(1, ...rates);
  const w = 600, h = 120, step = w / Math.max(1, rates.length - 1);
  const points = rates.map((r, i) => `${(i * step).toFixed(1)},${(h - (r / max) * (h - 10)).toFixed(1)}`);
  svg.innerHTML = `<polyline fill="none" stroke="currentColor" stroke-width="2" points="${points.join(" ")}"/>`;
  const note = document.getElementById("chart-note");
  if (note) note.textContent = `Now ${rates[rates.length - 1].toFixed(1)}/s · peak ${max.toFixed(1)}/s (while this page is open)`;
}

async function refresh(live) {
  try {
    const r = await fetch(location.href, { credentials: "same-origin" });
    if (r.redirected || !r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = doc.getElementById("live");
    if (!fresh) return;
    live.innerHTML = fresh.innerHTML;
    for (const k of ["accepted", "final"]) {
      if (fresh.dataset[k] !== undefined) live.dataset[k] = fresh.dataset[k];
    }
    sample(live);
  } catch (_) { /* the next tick tries again */ }
}

function startLive() {
  const live = document.getElementById("live");
  if (!live) return;
  sample(live);
  const every = Number(live.dataset.live) || 2000;
  const tick = async () => {
    await refresh(live);
    if (live.dataset.final !== "true") setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// ---- Lifecycle buttons. ----
document.addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-action]");
  if (!b) return;
  const { action, campaign } = b.dataset;
  if (!confirm(`${b.textContent.trim()} this campaign?`)) return;
  b.disabled = true;
  try {
    await api("POST", `/v1/campaigns/${campaign}/${action}`);
    const live = document.getElementById("live");
    if (live) { live.dataset.final = "false"; await refresh(live); }
  } catch (err) {
    alert(err.message);
  } finally {
    b.disabled = false;
  }
});

// ---- Deleting an ended campaign: everything kept of it goes; back to the list. ----
document.addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-delete]");
  if (!b) return;
  if (!confirm("Delete this campaign and everything kept of it (its recipients, outcomes " +
               "and stats)? Download its failures and cost first if you want them. This " +
               "cannot be undone.")) return;
  b.disabled = true;
  try {
    await api("DELETE", `/v1/campaigns/${b.dataset.delete}`);
    location.assign("/");
  } catch (err) {
    alert(err.message);
    b.disabled = false;
  }
});

// ---- New campaign: checked as you type, by the API's own rules. ----
function specFrom(form) {
  const v = (name) => form.elements[name].value.trim();
  let message;
  try { message = JSON.parse(v("message")); } catch (err) { throw new Error(`message: not valid JSON (${err.message})`); }
  const spec = { name: v("name"), message };
  if (v("phone_number_id")) spec.phone_number_id = v("phone_number_id");
  if (v("default_region")) spec.default_region = v("default_region").toUpperCase();
  if (v("mps")) spec.mps = Number(v("mps"));
  if (v("schedule_at")) spec.schedule_at = new Date(v("schedule_at")).toISOString();
  if (v("window_start") || v("window_end")) {
    spec.send_window = { start: v("window_start"), end: v("window_end") };
    if (v("window_zone")) spec.send_window.time_zone = v("window_zone");
  }
  return spec;
}

function setupNewCampaign() {
  const form = document.getElementById("new-campaign");
  if (!form) return;
  const out = document.getElementById("check");
  let timer = null, seq = 0;
  const show = (ok, text) => { out.textContent = text; out.className = ok ? "status ok" : "status error"; };
  const check = async () => {
    const mine = ++seq;
    try {
      const spec = specFrom(form);
      if (!spec.name) { show(false, "name: give the campaign a name"); return; }
      const r = await api("POST", "/v1/campaigns/validate", JSON.stringify(spec), "application/json");
      if (mine !== seq) return;
      show(true, r.columns.length ? `Valid. The CSV needs a phone column and: ${r.columns.join(", ")}.` : "Valid. The CSV needs a phone column.");
    } catch (err) {
      if (mine === seq) show(false, err.message);
    }
  };
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 300); });
  loadTemplates(form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const c = await api("POST", "/v1/campaigns", JSON.stringify(specFrom(form)), "application/json");
      location.assign(`/campaigns/${c.id}`);
    } catch (err) {
      show(false, err.message);
    }
  });
  check();
}

// The account's approved templates, when one is configured: choosing one writes its message,
// with a placeholder per body parameter to rename after the CSV's columns.
async function loadTemplates(form) {
  let list;
  try { list = (await api("GET", "/v1/templates")).templates; } catch (_) { return; }
  if (!list.length) return;
  const select = document.getElementById("template");
  for (const [i, t] of list.entries()) {
    select.append(el("option", { value: String(i) }, `${t.name} (${t.language}, ${t.category.toLowerCase()})`));
  }
  document.getElementById("template-picker").hidden = false;
  select.addEventListener("change", () => {
    const t = list[Number(select.value)];
    if (!t || select.value === "") return;
    const template = { name: t.name, language: { code: t.language } };
    if (t.body_parameters > 0) {
      const parameters = [];
      for (let n = 1; n <= t.body_parameters; n++) parameters.push({ type: "text", text: `{{column_${n}}}` });
      template.components = [{ type: "body", parameters }];
    }
    form.elements.message.value = JSON.stringify({ type: "template", template }, null, 2);
    form.dispatchEvent(new Event("input"));
  });
}

// ---- Upload: a preview of the first rows, then the whole file with progress. ----
const PREVIEW_BYTES = 64 * 1024;

// The file's first rows as bytes: the server decodes them in the file's own character set
// (decoded here as UTF-8, a Windows-1252 file's accents would be lost before it could).
async function firstRows(file) {
  const bytes = new Uint8Array(await file.slice(0, PREVIEW_BYTES).arrayBuffer());
  if (file.size <= PREVIEW_BYTES) return bytes;
  // Whole rows only: up to the last line break (in UTF-16LE, its second byte too).
  const utf16le = bytes[0] === 0xff && bytes[1] === 0xfe ? 1 : 0;
  return bytes.slice(0, bytes.lastIndexOf(10) + 1 + utf16le);
}

function renderPreview(p) {
  const box = document.getElementById("preview");
  box.replaceChildren();
  box.append(el("p", {}, `Phone column: `, el("code", {}, p.phone_column),
    ` · delimiter ${JSON.stringify(p.delimiter)} · other columns: ${p.variables.join(", ") || "none"}`));
  if (p.recipients.length) {
    const body = el("tbody");
    for (const r of p.recipients) {
      const values = Object.entries(r.values).map(([k, v]) => `${k} = ${v}`).join(", ");
      body.append(el("tr", {}, el("td", { class: "mono" }, r.phone), el("td", {}, r.region),
        el("td", {}, values), el("td", {}, el("code", { class: "message" }, JSON.stringify(r.message)))));
    }
    box.append(el("h3", {}, "First recipients, as they would be sent"),
      el("div", { class: "scroll" }, el("table", { class: "preview" },
        el("thead", {}, el("tr", {}, el("th", {}, "Number"), el("th", {}, "Region"), el("th", {}, "Values"), el("th", {}, "Message"))), body)));
  }
  renderRejects(box, p.rejects, "First rows that would be rejected");
}

function renderRejects(box, rejects, title) {
  if (!rejects.length) return;
  const list = el("ul", { class: "rejects" });
  for (const r of rejects) list.append(el("li", {}, `line ${r.line}: ${r.reason.replace(/_/g, " ")} — ${r.detail}`));
  box.append(el("h3", {}, title), list);
}

function setupUpload() {
  const section = document.getElementById("upload");
  if (!section) return;
  const id = section.dataset.campaign;
  const input = document.getElementById("csv");
  const go = document.getElementById("upload-go");
  const bar = document.getElementById("upload-progress");
  const result = document.getElementById("upload-result");
  const charset = document.getElementById("charset");
  // The file's character set, when the operator named one (Excel's CSV is not UTF-8).
  const csvType = () => (charset.value ? `text/csv; charset=${charset.value}` : "text/csv");
  let file = null;
  const choose = async (f) => {
    file = f;
    result.textContent = "";
    try {
      renderPreview(await api("POST", `/v1/campaigns/${id}/preview`, await firstRows(f), csvType()));
      go.hidden = false;
      go.textContent = `Upload ${f.name} (${(f.size / 1024).toFixed(0)} KiB)`;
    } catch (err) {
      document.getElementById("preview").replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
      go.hidden = true;
    }
  };
  input.addEventListener("change", () => input.files[0] && choose(input.files[0]));
  charset.addEventListener("change", () => file && choose(file));
  const drop = section.querySelector(".drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0]);
  });
  go.addEventListener("click", () => {
    if (!file) return;
    go.disabled = true;
    bar.hidden = false;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/campaigns/${id}/recipients`);
    xhr.setRequestHeader("Content-Type", csvType());
    xhr.setRequestHeader("X-Herald-CSRF", csrf());
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      go.disabled = false;
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (_) { data = null; }
      result.replaceChildren();
      if (xhr.status !== 200 || !data) {
        result.append(el("p", { class: "error", role: "alert" }, data && data.error ? data.error.message : `upload failed (${xhr.status})`));
        return;
      }
      bar.value = 100;
      result.append(el("p", { class: "ok", id: "upload-summary" },
        `${data.accepted} recipients added · ${data.already_present} already there · ${data.duplicates} duplicates · ${data.invalid} invalid · ${data.suppressed} suppressed (${data.rows} rows)`));
      renderRejects(result, data.rejects, "First rejects");
      const live = document.getElementById("live");
      if (live) refresh(live);
    };
    xhr.onerror = () => { go.disabled = false; result.textContent = "The upload was cut off; send the file again (nothing is added twice)."; };
    xhr.send(file);
  });
}

// ---- Follow-up: a new campaign from this one's outcomes. ----
function setupFollowUp() {
  const form = document.getElementById("follow-up");
  if (!form) return;
  const out = document.getElementById("follow-check");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = (name) => form.elements[name].value.trim();
    try {
      let message;
      try { message = JSON.parse(v("message")); } catch (err) { throw new Error(`campaign.message: not valid JSON (${err.message})`); }
      const body = { audience: v("audience"), campaign: { name: v("name"), message } };
      if (body.audience === "not_delivered") body.not_delivered_after_hours = Number(v("after_hours"));
      const r = await api("POST", `/v1/campaigns/${form.dataset.campaign}/follow-up`, JSON.stringify(body), "application/json");
      location.assign(`/campaigns/${r.campaign.id}`);
    } catch (err) {
      out.textContent = err.message;
      out.className = "status error";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startLive();
  setupNewCampaign();
  setupUpload();
  setupFollowUp();
});
