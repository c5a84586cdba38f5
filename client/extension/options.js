// The options page: port, token and excluded sites, kept in chrome.storage.local.
import { loadConfig, normaliseHost } from "./config.js";

function $(id) {
  return document.getElementById(id);
}

function say(text, kind) {
  $("saved").textContent = text;
  $("saved").className = "message " + (kind || "");
}

async function show() {
  const config = await loadConfig();
  $("port").value = String(config.port);
  $("token").value = config.token;
  $("excluded").value = config.excluded.join("\n");
}

async function save(event) {
  event.preventDefault();
  const portText = $("port").value.trim();
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    say(`port ${JSON.stringify(portText)} is not valid: expected a whole number from 1 to 65535`, "error");
    return;
  }
  const token = $("token").value.trim();
  const excluded = [];
  for (const line of $("excluded").value.split("\n")) {
    if (!line.trim()) continue;
    const host = normaliseHost(line);
    if (!host) {
      say(`excluded site ${JSON.stringify(line.trim())} is not valid: expected a host name such as example.com`, "error");
      return;
    }
    if (!excluded.includes(host)) excluded.push(host);
  }
  await chrome.storage.local.set({ port, token, excluded });
  $("excluded").value = excluded.join("\n");
  say("Saved.", "ok");
}

document.addEventListener("DOMContentLoaded", () => {
  $("settings").addEventListener("submit", save);
  show();
});
