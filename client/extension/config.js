// Settings shared by the service worker, the popup and the options page.
//
// chrome.storage.local holds what the person sets on the options page: `port`, `token` and
// `excluded` (host names; a host excludes itself and its subdomains). defaults.json holds the
// port `vane client extension --out DIR --port P` wrote.
"use strict";

export const DEFAULT_PORT = 8741;
export const MAX_ID_LEN = 2048; // vane.shared.events.MAX_ITEM_ID_LEN
export const MAX_TITLE_LEN = 4096; // vane.shared.events.MAX_TITLE_LEN

// Browser transitions that are also Vane event kinds (vane.shared.events.KINDS); the rest are "view".
const KIND_OF_TRANSITION = { typed: "typed", link: "link", reload: "reload", auto_bookmark: "bookmark" };

let defaultsPromise = null;

async function packagedDefaults() {
  if (!defaultsPromise) {
    defaultsPromise = fetch(chrome.runtime.getURL("defaults.json"))
      .then((r) => r.json())
      .catch(() => ({}));
  }
  return defaultsPromise;
}

export async function loadConfig() {
  const defaults = await packagedDefaults();
  const stored = await chrome.storage.local.get(["port", "token", "excluded"]);
  const port = Number(stored.port || defaults.port || DEFAULT_PORT);
  return {
    port,
    token: typeof stored.token === "string" ? stored.token : "",
    excluded: Array.isArray(stored.excluded) ? stored.excluded : [],
    base: "http://127.0.0.1:" + port,
  };
}

export function kindFor(transition) {
  return KIND_OF_TRANSITION[transition] || "view";
}

// "https://www.Example.com/x" or "example.com." -> "example.com"; null when it is no host name.
export function normaliseHost(entry) {
  let text = String(entry).trim().toLowerCase();
  if (!text) return null;
  if (!/^[a-z][a-z0-9+.-]*:\/\//.test(text)) text = "http://" + text;
  let host;
  try {
    host = new URL(text).hostname;
  } catch (err) {
    return null;
  }
  host = host.replace(/\.+$/, "").replace(/^www\./, "");
  return /^[a-z0-9.[\]:-]+$/.test(host) && host.length > 0 ? host : null;
}

export function isExcluded(url, excluded) {
  let host;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch (err) {
    return true;
  }
  return excluded.some((entry) => host === entry || host.endsWith("." + entry));
}

// The visit as a Vane event (POST /api/events); null for pages that are never sent.
export function visitEvent(url, title, timeMs, transition, config) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch (err) {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  const own = ["127.0.0.1", "localhost", "[::1]"].includes(parsed.hostname) && Number(parsed.port) === config.port;
  if (own || isExcluded(url, config.excluded)) return null;
  const id = url.slice(0, MAX_ID_LEN);
  const event = {
    item_id: id,
    url: id,
    timestamp: timeMs / 1000,
    kind: kindFor(transition),
    transition: transition || "unknown",
  };
  const cleanTitle = String(title || "").trim().slice(0, MAX_TITLE_LEN);
  if (cleanTitle && cleanTitle !== url) event.title = cleanTitle;
  return event;
}
