// Vane service worker: each completed visit becomes an event on the local Vane API.
//
// Which browser events: webNavigation.onCommitted (main frame) gives the transition type (typed,
// link, reload, ...) and the time of the visit but no title; tabs.onUpdated with status "complete"
// gives the final URL, the title and tab.incognito but no transition. history.onVisited has
// neither a reliable title (often empty when it fires) nor the transition, and
// webNavigation.onCompleted has no title. So a commit is remembered per tab (also in
// chrome.storage.session, which outlives a restart of this worker) and sent when its tab completes.
//
// Delivery: every visit is appended to a queue in chrome.storage.local first, then the queue is
// sent oldest first in batches. While the server is down (or refuses the token) the queue stays,
// and a chrome.alarms retry fires with backoff (30 s, 1, 2, 4 ... up to 15 min); a new visit, a
// browser start, a settings change or opening the popup also retries. An event the server refuses as
// bad input (400/413) is dropped alone and counted, so it cannot block the ones behind it.
import { loadConfig, visitEvent } from "./config.js";

const QUEUE_KEY = "queue";
const STATE_KEY = "delivery";
const ALARM = "vane-retry";
const BATCH = 50;
const MAX_QUEUE = 5000;
const MAX_BACKOFF_S = 900;

// One storage writer at a time inside this worker.
let chain = Promise.resolve();
function serial(task) {
  const run = chain.then(task, task);
  chain = run.catch(() => undefined);
  return run;
}

async function setState(patch) {
  const { [STATE_KEY]: old = {} } = await chrome.storage.local.get(STATE_KEY);
  await chrome.storage.local.set({ [STATE_KEY]: { ...old, ...patch } });
}

function enqueue(event) {
  return serial(async () => {
    const { [QUEUE_KEY]: queue = [], [STATE_KEY]: state = {} } = await chrome.storage.local.get([QUEUE_KEY, STATE_KEY]);
    queue.push(event);
    let dropped = 0;
    while (queue.length > MAX_QUEUE) {
      queue.shift();
      dropped += 1;
    }
    await chrome.storage.local.set({
      [QUEUE_KEY]: queue,
      [STATE_KEY]: { ...state, queued: queue.length, overflowed: (state.overflowed || 0) + dropped },
    });
  });
}

async function post(config, events) {
  return fetch(config.base + "/api/events", {
    method: "POST",
    headers: { Authorization: "Bearer " + config.token, "Content-Type": "application/json" },
    body: JSON.stringify({ events }),
    cache: "no-store",
    credentials: "omit",
  });
}

async function errorText(response) {
  try {
    const data = await response.json();
    if (data && data.error) return `${response.status} ${data.error.type}: ${data.error.message}`;
  } catch (err) {
    // not JSON
  }
  return `HTTP ${response.status}`;
}

// A failed retry doubles the wait; a failed send after a new visit leaves a pending retry as it is.
async function scheduleRetry(reason, fromAlarm) {
  const { [STATE_KEY]: state = {} } = await chrome.storage.local.get(STATE_KEY);
  if (!fromAlarm && (await chrome.alarms.get(ALARM))) {
    await setState({ ok: false, error: reason });
    return;
  }
  const attempts = (state.attempts || 0) + 1;
  const delayS = Math.min(30 * 2 ** (attempts - 1), MAX_BACKOFF_S);
  await chrome.alarms.create(ALARM, { delayInMinutes: delayS / 60 });
  await setState({ ok: false, error: reason, attempts, retryAt: Date.now() + delayS * 1000 });
}

// Send the queue, oldest first; stop at the first failure that is not the events' fault.
function flush(fromAlarm = false) {
  return serial(async () => {
    const config = await loadConfig();
    if (!config.token) {
      await setState({ ok: false, error: "no token: set it on the Vane extension's options page" });
      return;
    }
    let size = BATCH;
    for (;;) {
      const { [QUEUE_KEY]: queue = [] } = await chrome.storage.local.get(QUEUE_KEY);
      if (queue.length === 0) {
        await chrome.alarms.clear(ALARM);
        await setState({ ok: true, error: null, attempts: 0, queued: 0 });
        return;
      }
      const batch = queue.slice(0, size);
      let response;
      try {
        response = await post(config, batch);
      } catch (err) {
        await scheduleRetry(`server not running on ${config.base}`, fromAlarm);
        return;
      }
      if (response.ok) {
        const rest = queue.slice(batch.length);
        await chrome.storage.local.set({ [QUEUE_KEY]: rest });
        await setState({ queued: rest.length, lastSent: Date.now() });
        continue;
      }
      if ((response.status === 400 || response.status === 413) && batch.length > 1) {
        size = 1; // find the refused event: one at a time
        continue;
      }
      if (response.status === 400 || response.status === 413) {
        const reason = await errorText(response);
        const { [STATE_KEY]: state = {} } = await chrome.storage.local.get(STATE_KEY);
        await chrome.storage.local.set({ [QUEUE_KEY]: queue.slice(1) });
        await setState({ refused: (state.refused || 0) + 1, lastRefused: reason, queued: queue.length - 1 });
        continue;
      }
      await scheduleRetry(await errorText(response), fromAlarm);
      return;
    }
  });
}

// ---- visits ----------------------------------------------------------------------------------------

// tabId -> the commits not yet completed, oldest first: a fast second navigation can commit before
// the first one's "complete" reaches this worker, so a completion takes the commit of its own URL.
const commits = new Map();
const MAX_PENDING = 10;

chrome.webNavigation.onCommitted.addListener((details) => {
  if (details.frameId !== 0) return;
  const pending = (commits.get(details.tabId) || []).slice(-(MAX_PENDING - 1));
  pending.push({ url: details.url, transition: details.transitionType, timeMs: details.timeStamp || Date.now() });
  commits.set(details.tabId, pending);
  chrome.storage.session.set({ ["commit:" + details.tabId]: pending }).catch(() => undefined);
});

function originOf(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.origin : null;
  } catch (err) {
    return null;
  }
}

async function takeCommit(tabId, url) {
  const key = "commit:" + tabId;
  let pending = commits.get(tabId);
  if (!pending) pending = (await chrome.storage.session.get(key))[key] || [];
  if (pending.length === 0) return null;
  let index = pending.map((c) => c.url).lastIndexOf(url);
  if (index < 0) {
    // The URL changed after its commit (in-page navigation): the newest commit of the same origin.
    // A late "complete" of another page (e.g. the new tab's about:blank) takes nothing.
    const origin = originOf(url);
    index = origin ? pending.map((c) => originOf(c.url)).lastIndexOf(origin) : -1;
    if (index < 0) return null;
  }
  const commit = pending[index];
  const rest = pending.slice(index + 1);
  commits.set(tabId, rest);
  await chrome.storage.session.set({ [key]: rest }).catch(() => undefined);
  return commit;
}

// Visits are taken one at a time, so they enter the queue in the order they completed.
let visits = Promise.resolve();
chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (change.status !== "complete") return;
  visits = visits.then(() => handleVisit(tabId, tab)).catch((err) => console.warn("vane: visit not queued", err));
});

async function handleVisit(tabId, tab) {
  const commit = await takeCommit(tabId, tab.url || "");
  if (!commit || tab.incognito) return; // no new navigation (e.g. a second "complete"), or private
  const config = await loadConfig();
  const event = visitEvent(tab.url || "", tab.title, commit.timeMs, commit.transition, config);
  if (!event) return;
  await enqueue(event);
  flush(); // not awaited: a slow server must not hold up the next visit
}

chrome.tabs.onRemoved.addListener((tabId) => {
  commits.delete(tabId);
  chrome.storage.session.remove("commit:" + tabId).catch(() => undefined);
});

// ---- retries ---------------------------------------------------------------------------------------

chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === ALARM) flush(true);
});
chrome.runtime.onStartup.addListener(() => flush());
chrome.runtime.onInstalled.addListener(() => flush());
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && ("token" in changes || "port" in changes)) flush();
});
chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (sender.id !== chrome.runtime.id || !message || message.type !== "flush") return false;
  flush().then(() => reply({ ok: true }), (err) => reply({ ok: false, error: String(err) }));
  return true;
});
