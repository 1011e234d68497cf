// opg web: chat streaming (plain fetch), credit rows, top-ups, live tables, sortable tables, uPlot charts.
// Loaded from this origin only (Content-Security-Policy: default-src 'self'); no inline script anywhere.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---------------------------------------------------------------------------------------------- chat
const history = [];

async function postJSON(url, body) {
  const res = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json", "X-OPG-Web": "1"}, body: JSON.stringify(body)});
  let data = null;
  try { data = await res.json(); } catch (e) { data = {reason: "HTTP " + res.status}; }
  return {ok: res.ok, data};
}

function rowText(row) {
  const parts = [`this answer cost ${row.cost} OPG`];
  if (row.creditsLeft && row.creditsLeft !== "-") parts.push(`${row.creditsLeft} OPG credits left`);
  parts.push(row.text || row.status);
  return parts;
}

function renderRow(box, row) {
  box.replaceChildren();
  const [cost, ...rest] = rowText(row);
  box.append(el("span", {class: "cost", "data-wei": row.costWei, text: cost}));
  for (const r of rest) box.append(" · ", el("span", {class: r.startsWith("settled") ? "settled" : "state", text: r}));
  if (row.season) box.append(" · ", el("span", {class: "season", text: row.season}));
  if (row.receiptId) box.append(" · ", el("a", {class: "path-link", href: "/answer/" + row.receiptId, text: "path of this OPG →"}));
  if (row.problem) box.append(" · ", el("span", {class: "bad", text: row.problem}));
  box.dataset.status = row.status;
  if (row.batchId) box.dataset.batch = row.batchId;
}

async function followRow(box, receiptId) {
  for (let i = 0; i < 400; i++) {
    await new Promise(r => setTimeout(r, 1500));
    let row;
    try { row = await (await fetch("/api/row/" + receiptId)).json(); } catch (e) { continue; }
    if (row.spendable && $("#spendable")) $("#spendable").textContent = row.spendable;
    renderRow(box, row);
    if (row.status === "settled" || row.status === "rejected") return;
  }
}

function showTopup(ev) {
  const box = $("#topup");
  if (!box) return;
  box.classList.remove("hidden");
  $("#topup-text").textContent = `This answer needs up to ${ev.quote} OPG (the node's quote); you have ${ev.left} OPG ` +
    `available` + (ev.allowance !== null ? ` (session allowance ${ev.allowance} OPG)` : "") + `. Top up at least ${ev.needed} OPG.`;
  $("#topup-amount").value = ev.suggest;
  $("#topup-cli").textContent = ev.canDeposit ? "Or from a shell: " + ev.cli.deposit + " · " + ev.cli.gasless
    : "This app holds only the session key: " + ev.cli.deposit + " · " + ev.cli.gasless +
      (ev.allowanceShort ? " · raise the allowance: " + ev.cli.session : "");
  for (const id of ["#deposit", "#deposit-gasless"]) $(id).disabled = !ev.canDeposit;
}

async function deposit(gasless) {
  const out = $("#topup-result");
  out.textContent = gasless ? "signing the authorisation; the relayer submits it…" : "approving and depositing…";
  const {ok, data} = await postJSON("/api/deposit", {amount: $("#topup-amount").value, gasless});
  if (ok) {
    out.textContent = `deposited ${data.amount} OPG${gasless ? " gaslessly (the relayer paid the gas)" : ""}; credits ${data.credits} OPG, tx ${data.transaction || "-"}`;
    out.className = "good";
    if ($("#spendable")) $("#spendable").textContent = data.spendable;
  } else {
    out.textContent = "refused: " + (data.reason || JSON.stringify(data));
    out.className = "bad";
  }
}

async function send(ev) {
  ev.preventDefault();
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  const button = $("#send");
  button.disabled = true;
  const turn = el("div", {class: "turn"});
  turn.append(el("div", {class: "user", text: prompt}));
  const answer = el("div", {class: "answer"});
  const meta = el("div", {class: "meta"});
  const text = el("div", {class: "text"});
  const row = el("div", {class: "credit-row", text: "…"});
  answer.append(meta, text, row);
  turn.append(answer);
  $("#thread").append(turn);
  $("#prompt").value = "";
  const body = {prompt, node: $("#node").value || null, model: $("#model").value || null,
                exact: $("#exact").checked, max_tokens: parseInt($("#max-tokens").value, 10) || null,
                history: history.slice(-20)};
  let tokens = 0, finalText = "";
  try {
    const res = await fetch("/api/chat", {method: "POST", headers: {"Content-Type": "application/json", "X-OPG-Web": "1"}, body: JSON.stringify(body)});
    if (!res.ok || !res.body) {
      let why = "HTTP " + res.status;
      try { why = JSON.stringify(await res.json()); } catch (e) {}
      throw new Error(why);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.trim()) continue;
        const e = JSON.parse(line);
        if (e.type === "start") {
          meta.textContent = `${e.model} on ${e.node.slice(0, 10)}… · ${e.scheme}`;
        } else if (e.type === "token") {
          tokens += 1;
          text.append(document.createTextNode(e.text));
          text.dataset.tokens = String(tokens);
        } else if (e.type === "done") {
          finalText = e.answer;
          renderRow(row, e.row);
          if (e.row.receiptId && e.row.status !== "settled") followRow(row, e.row.receiptId);
        } else if (e.type === "insufficient") {
          row.textContent = `not enough credit: this answer needs up to ${e.quote} OPG, ${e.left} OPG left; top up ${e.needed} OPG`;
          row.className = "credit-row bad insufficient";
          showTopup(e);
        } else if (e.type === "error") {
          row.textContent = e.message;
          row.className = "credit-row bad";
        }
      }
    }
  } catch (err) {
    row.textContent = "failed: " + err.message;
    row.className = "credit-row bad";
  } finally {
    button.disabled = false;
  }
  if (finalText) { history.push({role: "user", content: prompt}, {role: "assistant", content: finalText}); }
}

// ---------------------------------------------------------------------------------------------- tables
const sortState = {};

function sortTable(table, col, dir) {
  const body = table.tBodies[0];
  if (!body) return;
  const rows = Array.from(body.rows);
  const key = r => {
    const c = r.cells[col];
    if (!c) return "";
    const v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
    const n = Number(v);
    return v !== "" && !Number.isNaN(n) ? n : v.toLowerCase();
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (typeof x === "number" && typeof y === "number") return dir * (x - y);
    return dir * String(x).localeCompare(String(y));
  });
  body.append(...rows);
  $$("th", table).forEach((th, i) => th.dataset.dir = i === col ? (dir > 0 ? "asc" : "desc") : "");
}

function wireSort(root = document) {
  for (const table of $$("table.sortable", root)) {
    $$("th[data-sort]", table).forEach((th, i) => {
      const col = Array.from(th.parentNode.children).indexOf(th);
      th.addEventListener("click", () => {
        const prev = sortState[table.id];
        const dir = prev && prev.col === col ? -prev.dir : 1;
        sortState[table.id] = {col, dir};
        sortTable(table, col, dir);
      });
    });
    const s = sortState[table.id];
    if (s) sortTable(table, s.col, s.dir);
  }
}

async function refreshLive() {
  const live = $$("[data-live][id]");
  if (!live.length) return;
  let doc;
  try {
    const res = await fetch(location.href, {headers: {"X-Live": "1"}});
    if (!res.ok) return;
    doc = new DOMParser().parseFromString(await res.text(), "text/html");
  } catch (e) { return; }
  for (const node of live) {
    const fresh = doc.getElementById(node.id);
    if (fresh) {
      node.replaceWith(fresh);
      wireSort(fresh.parentNode || document);
    }
  }
}

// ---------------------------------------------------------------------------------------------- charts
const charts = {};
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function fixed(v, places) {
  // fixed notation, never exponent form: as many decimals as the tick step (or the value) needs, at most 12
  if (v === null || v === undefined) return "";
  if (places === undefined) {
    const a = Math.abs(v);
    places = a >= 1000 ? 0 : a >= 1 ? 4 : a === 0 ? 0 : Math.min(12, 2 - Math.floor(Math.log10(a)));
  }
  return v.toLocaleString("en-US", {minimumFractionDigits: 0, maximumFractionDigits: places, useGrouping: true});
}

function tickPlaces(incr) {
  return incr > 0 && incr < 1 ? Math.min(12, Math.ceil(-Math.log10(incr) - 1e-9)) : 0;
}

async function drawChart(box) {
  const name = box.dataset.chart;
  const win = new URLSearchParams(location.search).get("window") || "all";
  let data;
  try { data = await (await fetch(`/api/charts/${name}?window=${encodeURIComponent(win)}`)).json(); } catch (e) { return; }
  box.dataset.points = String(data.x.length);
  const aligned = [data.x, ...data.series.map(s => s.values)];
  if (charts[name] && charts[name].series.length === data.series.length + 1) {
    charts[name].setData(aligned);
    return;
  }
  if (charts[name]) { charts[name].destroy(); box.replaceChildren(); }
  if (typeof uPlot === "undefined") return;
  const opts = {
    width: Math.max(280, box.clientWidth || 480), height: 220,
    scales: {x: {time: !!data.time}},
    series: [{label: data.xlabel || "time", value: (u, v) => v === null ? "" : data.time ? new Date(v * 1000).toLocaleTimeString() : String(v)},
             ...data.series.map((s, i) => ({label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
                                            points: {show: data.x.length < 60}, value: (u, v) => fixed(v)}))],
    axes: [data.time ? {} : {values: (u, ticks) => ticks.map(t => Number.isInteger(t) ? String(t) : "")},
           {values: (u, ticks, axis, space, incr) => ticks.map(t => fixed(t, tickPlaces(incr))), size: 80}],
  };
  charts[name] = new uPlot(opts, aligned, box);
}

function drawCharts() { $$(".chart[data-chart]").forEach(drawChart); }

// ---------------------------------------------------------------------------------------------- start
document.addEventListener("DOMContentLoaded", () => {
  const form = $("#chat-form");
  if (form) {
    form.addEventListener("submit", send);
    $("#prompt").addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
    $("#deposit").addEventListener("click", () => deposit(false));
    $("#deposit-gasless").addEventListener("click", () => deposit(true));
    const nodeSel = $("#node"), modelSel = $("#model");
    nodeSel.addEventListener("change", () => {
      for (const o of modelSel.options) o.hidden = !!o.dataset.node && !!nodeSel.value && o.dataset.node !== nodeSel.value;
      modelSel.value = "";
    });
  }
  wireSort();
  drawCharts();
  const reload = $("[data-reload]");
  if (reload) setTimeout(() => location.reload(), parseInt(reload.dataset.reload, 10) || 3000);
  setInterval(() => { refreshLive(); drawCharts(); }, 3000);
});
