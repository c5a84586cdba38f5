// Vane dashboard: the person's own interests, from the local Vane API on this machine.
//
// Rules this file keeps:
// - Every string that comes from the API (titles, URLs, topic names, reasons) reaches the page through
//   textContent or createElement/setAttribute on fixed attribute names only; never innerHTML.
// - The token is asked once and kept in localStorage (no cookies, so no CSRF surface).
// - The page is interactive once the interests (with their buttons), predictions, shifts and blocks
//   are drawn: body[data-ready] is set then, body[data-ready-ms] holds the time since navigation
//   start; body[data-complete] / body[data-complete-ms] once the chart is drawn too. The tests and
//   the benchmark read them; body[data-refreshes] counts the completed loads (block, forget... reload).
"use strict";

const TOKEN_KEY = "vane.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

function $(id) {
  return document.getElementById(id);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "className") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function pct(share) {
  const n = Number(share);
  return Number.isFinite(n) ? (100 * n).toFixed(1) + "%" : "?";
}

function when(value) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(String(value));
  return Number.isNaN(d.getTime()) ? String(value) : d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

// ---- API -------------------------------------------------------------------------------------------

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + token() };
  const init = { method: options.method || "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "NetworkError", "the Vane server does not answer (is `vane client serve` running?)");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.type || "HTTPError", e.message || "HTTP " + response.status);
  }
  return data;
}

function showError(err) {
  const box = $("error");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = (err.type ? err.type + ": " : "") + err.message;
  if (err.status === 401) askToken("The token was refused; paste the current one.");
}

function askToken(message) {
  $("main").hidden = true;
  $("token-form").hidden = false;
  for (const id of ["export", "reload", "logout"]) $(id).hidden = true;
  if (message) {
    const box = $("error");
    box.hidden = false;
    box.textContent = message;
  }
  $("token").focus();
}

// ---- Sections --------------------------------------------------------------------------------------

function topicOf(item) {
  return String(item.topic !== undefined ? item.topic : item.category);
}

function shareOf(item) {
  const v = item.share !== undefined ? item.share : item.probability;
  return Number(v);
}

function parentOf(topic) {
  const trimmed = topic.replace(/^\/+/, "");
  const cut = trimmed.indexOf("/");
  return cut < 0 ? trimmed : trimmed.slice(0, cut);
}

function topicButtons(topic) {
  const box = el("span", { className: "buttons" });
  const show = el("button", { type: "button", className: "events-btn", "data-topic": topic }, "Events");
  show.addEventListener("click", () => loadEvents(topic));
  const block = el("button", { type: "button", className: "block-btn", "data-topic": topic }, "Block");
  block.addEventListener("click", () => blockTopic(topic, false));
  const blockForget = el("button", { type: "button", className: "block-forget-btn danger", "data-topic": topic },
    "Block + forget its events");
  blockForget.addEventListener("click", () => blockTopic(topic, true));
  box.append(show, block, blockForget);
  return box;
}

function bar(share) {
  const outer = el("span", { className: "bar" });
  const inner = el("span", { className: "fill" });
  inner.style.width = Math.max(0, Math.min(100, 100 * share)).toFixed(1) + "%";
  outer.append(inner);
  return outer;
}

function renderInterests(top, full) {
  const list = $("interests");
  clear(list);
  const topItems = (top && top.interests) || [];
  const fullItems = (full && full.interests) || [];
  if (topItems.length === 0) {
    list.append(el("li", { className: "empty" }, "No interests yet: record some events first."));
    return;
  }
  for (const item of topItems) {
    const topic = topicOf(item);
    const share = shareOf(item);
    const children = fullItems.filter((c) => topicOf(c) !== topic && parentOf(topicOf(c)) === parentOf(topic));
    const li = el("li", { className: "interest", "data-topic": topic, "data-share": share, "data-level": "top" },
      el("span", { className: "name" }, topic), bar(share), el("span", { className: "share" }, pct(share)),
      topicButtons(topic));
    if (children.length) {
      const sub = el("ul", { className: "subtree" });
      for (const child of children) {
        const name = topicOf(child);
        sub.append(el("li", { className: "interest child", "data-topic": name, "data-share": shareOf(child),
          "data-level": "full" }, el("span", { className: "name" }, name), bar(shareOf(child)),
          el("span", { className: "share" }, pct(shareOf(child))), topicButtons(name)));
      }
      li.append(sub);
    }
    list.append(li);
  }
}

function renderPredictions(data) {
  const list = $("predictions");
  clear(list);
  const items = (data && data.predictions) || [];
  if (items.length === 0) list.append(el("li", { className: "empty" }, "Nothing to predict yet."));
  for (const p of items) {
    const topic = topicOf(p);
    const reasons = el("ul", { className: "reasons" });
    for (const r of p.reasons || []) reasons.append(el("li", {}, String(r)));
    list.append(el("li", { className: "prediction", "data-topic": topic, "data-probability": p.probability },
      el("span", { className: "name" }, topic), " ", el("span", { className: "share" }, pct(p.probability)),
      reasons));
  }
}

function namesOf(side) {
  if (side === null || side === undefined) return "—";
  if (Array.isArray(side)) return side.map(String).join(", ") || "—";
  if (typeof side === "object") {
    const entries = Object.entries(side);
    if (entries.every(([, v]) => typeof v === "number")) {
      entries.sort((a, b) => b[1] - a[1]);
      return entries.map(([k, v]) => k + " " + pct(v)).join(", ") || "—";
    }
    const inner = side.topics || side.categories || side.top;
    if (inner !== undefined) return namesOf(inner);
    return entries.map(([k, v]) => k + ": " + String(v)).join(", ");
  }
  return String(side);
}

function renderShifts(data) {
  const list = $("shifts");
  clear(list);
  const items = ((data && data.shifts) || []).slice().reverse();
  if (items.length === 0) list.append(el("li", { className: "empty" }, "No shift detected yet."));
  for (const s of items) {
    const from = s.from !== undefined ? s.from : s.from_categories;
    const to = s.to !== undefined ? s.to : s.to_categories;
    list.append(el("li", { className: "shift" },
      el("time", {}, when(s.time !== undefined ? s.time : s.timestamp)),
      el("span", { className: "from" }, namesOf(from)), el("span", { className: "arrow" }, " → "),
      el("span", { className: "to" }, namesOf(to))));
  }
}

function renderBlocks(data) {
  const list = $("blocks");
  clear(list);
  const items = (data && data.blocked) || [];
  if (items.length === 0) list.append(el("li", { className: "empty" }, "No topic is blocked."));
  for (const topic of items) {
    const name = String(topic);
    const unblock = el("button", { type: "button", className: "unblock-btn", "data-topic": name }, "Unblock");
    unblock.addEventListener("click", () => unblockTopic(name));
    const forget = el("button", { type: "button", className: "forget-topic-btn danger", "data-topic": name },
      "Forget its events");
    forget.addEventListener("click", () => forgetTopic(name));
    list.append(el("li", { className: "blocked", "data-topic": name }, el("span", { className: "name" }, name),
      unblock, forget));
  }
}

function renderHistory(data) {
  const box = $("history");
  clear(box);
  const buckets = (data && data.buckets) || [];
  if (buckets.length === 0) {
    box.append(el("p", { className: "empty" }, "Not enough history yet."));
    return;
  }
  const totals = new Map();
  for (const b of buckets) {
    for (const [topic, share] of Object.entries(b.shares || {})) totals.set(topic, (totals.get(topic) || 0) + share);
  }
  const topics = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length).map(([t]) => t);
  const W = 1100, H = 240, L = 40, R = 10, T = 10, B = 30;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart" });
  const title = svg("title");
  title.textContent = "Share of each topic over time";
  chart.append(title);
  const x = (i) => L + (buckets.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (buckets.length - 1));
  const y = (v) => T + (1 - v) * (H - T - B);
  for (const v of [0, 0.5, 1]) {
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: L - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = pct(v).replace(".0", "");
    chart.append(label);
  }
  for (const [i, b] of [[0, buckets[0]], [buckets.length - 1, buckets[buckets.length - 1]]]) {
    const label = svg("text", { x: x(i), y: H - 8, class: "axis", "text-anchor": i === 0 ? "start" : "end" });
    label.textContent = when(i === 0 ? b.start : b.end).slice(0, 10);
    chart.append(label);
  }
  const legend = el("ul", { className: "legend" });
  topics.forEach((topic, k) => {
    const points = buckets.map((b, i) => `${x(i).toFixed(1)},${y(Number((b.shares || {})[topic] || 0)).toFixed(1)}`);
    const line = svg("polyline", { points: points.join(" "), fill: "none", stroke: PALETTE[k], "stroke-width": 2,
      class: "series", "data-topic": topic });
    const tip = svg("title");
    tip.textContent = topic;
    line.append(tip);
    chart.append(line);
    const swatch = el("span", { className: "swatch" });
    swatch.style.background = PALETTE[k];
    legend.append(el("li", {}, swatch, topic));
  });
  box.append(chart, legend);
}

async function loadEvents(topic) {
  const list = $("events");
  $("events-topic").textContent = "Loading the events behind “" + topic + "”…";
  try {
    const data = await api("/api/events?topic=" + encodeURIComponent(topic) + "&limit=50");
    clear(list);
    const items = (data && data.events) || [];
    $("events-topic").textContent = items.length + " newest events behind “" + topic + "”";
    $("events").setAttribute("data-topic", topic);
    for (const e of items) {
      const itemId = String(e.item_id);
      const forget = el("button", { type: "button", className: "forget-btn danger", "data-item-id": itemId },
        "Forget");
      forget.addEventListener("click", () => forgetItem(itemId, topic));
      list.append(el("li", { className: "event", "data-item-id": itemId, "data-seq": e.seq },
        el("time", {}, when(e.timestamp)), el("span", { className: "title" }, e.title ? String(e.title) : "(no title)"),
        el("span", { className: "item" }, itemId), forget));
    }
    if (items.length === 0) list.append(el("li", { className: "empty" }, "No stored event behind this topic."));
    showError(null);
  } catch (err) {
    showError(err);
  }
}

async function mutate(request, after) {
  try {
    await request();
    showError(null);
    await refresh();
    if (after) await after();
  } catch (err) {
    showError(err);
  }
}

function blockTopic(topic, forgetToo) {
  return mutate(async () => {
    await api("/api/blocks", { method: "POST", body: { topic } });
    if (forgetToo) await api("/api/forget", { method: "POST", body: { topic } });
  });
}

function unblockTopic(topic) {
  return mutate(() => api("/api/blocks/" + encodeURIComponent(topic), { method: "DELETE" }));
}

function forgetTopic(topic) {
  return mutate(() => api("/api/forget", { method: "POST", body: { topic } }));
}

function forgetItem(itemId, topic) {
  return mutate(() => api("/api/forget", { method: "POST", body: { item_id: itemId } }), () => loadEvents(topic));
}

async function exportJson() {
  try {
    const data = await api("/api/export");
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "vane-export.json" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    showError(err);
  }
}

// ---- Loading ---------------------------------------------------------------------------------------

// Loads every section; `onCore` runs once the interactive ones (interests with their buttons,
// predictions, shifts, blocks) are drawn, before the chart, whose answer takes longest.
async function refresh(onCore) {
  const settle = (p, render) => p.then(render);
  const health = api("/api/health");
  const top = api("/api/interests?k=10&level=top");
  const full = api("/api/interests?k=50&level=full");
  const jobs = [
    settle(health, (h) => {
      $("status").textContent = `${h.events} events stored · Vane ${h.version}`;
      $("status").setAttribute("data-events", h.events);
    }),
    Promise.all([top, full]).then(([t, f]) => renderInterests(t, f)),
    settle(api("/api/predict?k=5"), renderPredictions),
    settle(api("/api/shifts"), renderShifts),
    settle(api("/api/blocks"), renderBlocks),
  ];
  const chart = settle(api("/api/interests/history?buckets=30"), renderHistory);
  const core = await Promise.allSettled(jobs);
  if (onCore) onCore();
  const results = [...core, ...(await Promise.allSettled([chart]))];
  const done = Number(document.body.getAttribute("data-refreshes") || 0) + 1;
  document.body.setAttribute("data-refreshes", String(done));
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

async function start() {
  if (!token()) {
    askToken();
    return;
  }
  $("token-form").hidden = true;
  $("main").hidden = false;
  for (const id of ["export", "reload", "logout"]) $(id).hidden = false;
  const mark = (name) => {
    document.body.setAttribute(`data-${name}-ms`, performance.now().toFixed(1));
    document.body.setAttribute(`data-${name}`, "1");
  };
  try {
    await refresh(() => mark("ready"));
    showError(null);
  } catch (err) {
    showError(err);
  }
  if (!document.body.hasAttribute("data-ready")) mark("ready");
  mark("complete");
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    localStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    showError(null);
    start();
  });
  $("block-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const topic = $("block-topic").value.trim();
    if (topic) blockTopic(topic, false).then(() => ($("block-topic").value = ""));
  });
  $("export").addEventListener("click", exportJson);
  $("reload").addEventListener("click", () => mutate(async () => undefined));
  $("logout").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    askToken();
  });
  start();
});
