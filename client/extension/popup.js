// The popup: the top interests (GET /api/interests?k=5), or why they cannot be shown.
// Strings from the server reach the page through textContent only.
import { loadConfig } from "./config.js";

function $(id) {
  return document.getElementById(id);
}

function say(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = "message " + (kind || "");
}

async function showQueue() {
  const { queue = [], delivery = {} } = await chrome.storage.local.get(["queue", "delivery"]);
  const parts = [];
  if (queue.length) parts.push(`${queue.length} visit(s) waiting to be sent`);
  if (delivery.overflowed) parts.push(`${delivery.overflowed} oldest visit(s) dropped: the queue was full`);
  if (delivery.refused) parts.push(`${delivery.refused} refused by the server (${delivery.lastRefused || ""})`);
  $("queue").textContent = parts.join(" · ");
}

async function main() {
  const config = await loadConfig();
  $("dashboard").href = config.base + "/";
  await showQueue();
  if (!config.token) {
    say("No token yet: open Settings and paste the output of `vane client token --store YOUR_STORE`.", "warn");
    return;
  }
  chrome.runtime.sendMessage({ type: "flush" }).then(showQueue, () => undefined);
  let response;
  try {
    response = await fetch(config.base + "/api/interests?k=5", {
      headers: { Authorization: "Bearer " + config.token },
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    say(`Vane server not running on ${config.base}. Start it with: vane client serve --store YOUR_STORE`
      + ` --port ${config.port}. Visits are kept and sent when it is back.`, "error");
    return;
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const e = (data && data.error) || {};
    const hint = response.status === 401 ? " Check the token in Settings." : "";
    say(`The Vane server refused: ${e.message || "HTTP " + response.status}.${hint}`, "error");
    return;
  }
  const list = $("interests");
  const items = (data && data.interests) || [];
  say(items.length ? "" : "No interests yet: browse a little.", items.length ? "" : "muted");
  for (const item of items) {
    const li = document.createElement("li");
    li.setAttribute("data-topic", String(item.topic));
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = String(item.topic);
    const share = document.createElement("span");
    share.className = "share";
    share.textContent = (100 * Number(item.share)).toFixed(1) + "%";
    li.append(name, share);
    list.append(li);
  }
}

main();
