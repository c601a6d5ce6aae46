// Bedside "Tonight": follows the live stream (server-sent events from /api/stream); where that is
// not available, or keeps failing, refreshes from the JSON API every few seconds instead.
// root.dataset.live says which: "sse", "polling" (or "static" before the script ran).
// Plain JavaScript, no framework, nothing loaded from elsewhere. Data goes into the page
// with textContent only (never as HTML). Times arrive as UTC ISO text and are shown in the
// browser's local time. Formatting matches web/display.py.
"use strict";

(function () {
  const root = document.getElementById("tonight");
  if (!root) {
    return;
  }
  const stateUrl = root.dataset.stateUrl;
  const eventsUrl = root.dataset.eventsUrl;
  const streamUrl = root.dataset.streamUrl;
  const refreshMs = Number(root.dataset.refreshMs) || 2000;
  const staleAfterS = Number(root.dataset.staleAfterS) || 30;
  const eventsLimit = Number(root.dataset.eventsLimit) || 50;
  // [key, label] pairs, in display order (a JSON object would lose the order).
  const eventPairs = JSON.parse(root.dataset.eventLabels || "[]");
  const statePairs = JSON.parse(root.dataset.stateLabels || "[]");
  const eventLabels = Object.fromEntries(eventPairs);
  const stateLabels = Object.fromEntries(statePairs);
  const eventOrder = eventPairs.map((pair) => pair[0]);
  // Same lists as HIDDEN_STATE_KEYS and SHOWN_WHEN_NONZERO in web/display.py.
  const hiddenStateKeys = new Set(["counts", "night_id"]);
  const shownWhenNonzero = new Set(["suppressed_events", "storage_problem"]);

  function byId(id) {
    return document.getElementById(id);
  }

  function show(id, visible) {
    const el = byId(id);
    if (el) {
      el.hidden = !visible;
    }
  }

  function cell(tag, text, className) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (className) {
      el.className = className;
    }
    return el;
  }

  function timeEl(iso, withDate) {
    const el = document.createElement("time");
    el.dateTime = iso || "";
    el.textContent = withDate ? localDateTime(iso) : localTime(iso);
    return el;
  }

  function parse(iso) {
    if (!iso) {
      return null;
    }
    const d = new Date(iso);
    return isNaN(d.getTime()) ? null : d;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function localTime(iso) {
    const d = parse(iso);
    return d ? pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) : "";
  }

  function localDateTime(iso) {
    const d = parse(iso);
    if (!d) {
      return "";
    }
    const day = d.toLocaleDateString(undefined, { weekday: "short", day: "2-digit", month: "short" });
    return day + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) {
      return "";
    }
    if (seconds < 10) {
      return seconds.toFixed(1) + " s";
    }
    const whole = Math.round(seconds);
    if (whole < 60) {
      return whole + " s";
    }
    if (whole < 3600) {
      return Math.floor(whole / 60) + " min " + pad(whole % 60) + " s";
    }
    return Math.floor(whole / 3600) + " h " + pad(Math.floor((whole % 3600) / 60)) + " min";
  }

  function intensity(value) {
    return value ? value.toFixed(1) + " \u00d7 resting" : "\u2013";
  }

  function eventLabel(type) {
    return eventLabels[type] || type;
  }

  function stateLabel(key) {
    if (stateLabels[key]) {
      return stateLabels[key];
    }
    const words = key.replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1).toLowerCase();
  }

  function stateValue(key, value) {
    if (key === "movements_per_hour") {
      return typeof value === "number" ? value.toFixed(1) : "\u2013";
    }
    if (value === null || value === undefined) {
      return key === "asleep" ? "not known yet (needs about 5 min in bed)" : "unknown";
    }
    if (typeof value === "boolean") {
      if (key === "sensor_ok" || key === "storage_ok") {
        return value ? "OK" : "FAULT";
      }
      if (key === "mqtt_connected") {
        return value ? "connected" : "offline";
      }
      if (key === "tracking") {
        return value ? "on" : "off";
      }
      return value ? "yes" : "no";
    }
    if ((key === "heart_bpm" || key === "breath_bpm") && typeof value === "number") {
      return value.toFixed(0) + " /min";
    }
    if (key === "profile" && typeof value === "string") {
      return value.toUpperCase();
    }
    if (key === "updated_at" && typeof value === "string") {
      return localTime(value) || value;
    }
    return String(value);
  }

  function renderStatus(live, ok) {
    const status = byId("status");
    show("conn", !ok);
    if (!status) {
      return;
    }
    if (!ok) {
      status.textContent = "no connection";
      status.classList.add("stale");
      return;
    }
    const age = live.age_s;
    if (age === null || age === undefined) {
      status.textContent = "never updated";
      status.classList.remove("stale");
    } else {
      status.textContent = age < 0 ? "updated just now" : "updated " + duration(age) + " ago";
      status.classList.toggle("stale", age > staleAfterS);
    }
  }

  function renderNight(night) {
    show("night", !!night);
    show("counts-card", !!night);
    show("events-card", !!night);
    if (!night) {
      return;
    }
    const started = byId("night-started");
    started.dateTime = night.started_at;
    started.textContent = localDateTime(night.started_at);
    const ended = byId("night-ended");
    ended.hidden = !night.ended_at;
    ended.replaceChildren(document.createTextNode(" \u00b7 ended "), timeEl(night.ended_at, false));
    byId("night-profile").textContent = String(night.profile || "").toUpperCase();

    const counts = night.counts || {};
    const types = eventOrder.filter((t) => t in counts);
    for (const t of Object.keys(counts)) {
      if (!types.includes(t)) {
        types.push(t);
      }
    }
    const rows = [];
    for (const type of types) {
      const n = counts[type];
      const tr = document.createElement("tr");
      tr.dataset.type = type;
      if (!n) {
        tr.className = "zero";
      }
      const th = cell("th", eventLabel(type));
      th.scope = "row";
      tr.append(th, cell("td", String(n)));
      rows.push(tr);
    }
    byId("counts").replaceChildren(...rows);
  }

  function renderState(state) {
    show("now", !!state);
    if (!state) {
      return;
    }
    const keys = statePairs.map((pair) => pair[0]).filter((k) => k in state);
    for (const k of Object.keys(state)) {
      if (!(k in stateLabels) && !hiddenStateKeys.has(k)) {
        keys.push(k);
      }
    }
    const items = [];
    for (const key of keys) {
      const value = state[key];
      if ((value !== null && typeof value === "object") || (shownWhenNonzero.has(key) && !value)) {
        continue;
      }
      const div = document.createElement("div");
      div.className = "state-item";
      div.dataset.key = key;
      div.append(cell("dt", stateLabel(key)), cell("dd", stateValue(key, value)));
      items.push(div);
    }
    byId("state").replaceChildren(...items);
  }

  function renderEvents(events) {
    const rows = [];
    for (const ev of events.slice().reverse()) {
      const tr = document.createElement("tr");
      tr.dataset.id = ev.id;
      tr.dataset.type = ev.event_type;
      const when = document.createElement("td");
      when.append(timeEl(ev.start, false));
      tr.append(
        when,
        cell("td", eventLabel(ev.event_type)),
        cell("td", duration(ev.duration_s)),
        cell("td", intensity(ev.intensity)),
      );
      rows.push(tr);
    }
    byId("events").replaceChildren(...rows);
    show("events-empty", rows.length === 0);
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) {
      throw new Error(url + ": HTTP " + response.status);
    }
    return response.json();
  }

  let timer = null;
  let busy = false;

  function schedule(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, ms);
  }

  function render(live, events) {
    show("nodata", !live.night && !live.state);
    renderNight(live.night);
    renderState(live.state);
    renderEvents(events);
    renderStatus(live, true);
  }

  let source = null;
  let failures = 0;

  // Server-sent events: one "tonight" message at once, then on every change (and every few
  // seconds). EventSource reconnects by itself; after three failures in a row without a message
  // in between, the page falls back to polling.
  function startStream() {
    source = new EventSource(streamUrl);
    root.dataset.live = "sse";
    source.addEventListener("tonight", (msg) => {
      failures = 0;
      const data = JSON.parse(msg.data);
      render(data, data.events || []);
    });
    source.addEventListener("error", () => {
      // The server ends each stream after a few minutes and the browser reconnects at once:
      // one error is normal; two in a row without a message mean the monitor is unreachable.
      failures += 1;
      if (failures >= 2) {
        renderStatus(null, false);
      }
      // A refused stream (429/503: too many open; 401) is CLOSED by the browser, which will
      // not try again: poll the JSON API instead straight away.
      if (failures >= 3 || source.readyState === EventSource.CLOSED) {
        source.close();
        source = null;
        root.dataset.live = "polling";
        schedule(0);
      }
    });
  }

  async function refresh() {
    if (busy) {
      return;
    }
    busy = true;
    try {
      const live = await getJson(stateUrl);
      let events = [];
      if (live.night_id) {
        const query = new URLSearchParams({ night: live.night_id, limit: String(eventsLimit) });
        events = (await getJson(eventsUrl + "?" + query.toString())).events;
      }
      render(live, events);
    } catch (err) {
      renderStatus(null, false);
      console.warn("Bedside refresh failed:", err);
    } finally {
      busy = false;
      schedule(refreshMs);
    }
  }

  // Re-render server-rendered times in the browser's zone (the server used the Pi's).
  for (const el of document.querySelectorAll("#events time, #night-ended time")) {
    el.textContent = localTime(el.dateTime);
  }
  const started = byId("night-started");
  if (started && started.dateTime) {
    started.textContent = localDateTime(started.dateTime);
  }
  // A phone woken at 3 a.m. should not show the state from when its screen went off.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !source) {
      schedule(0);
    }
  });
  if (streamUrl && "EventSource" in window) {
    startStream();
  } else {
    root.dataset.live = "polling";
    schedule(refreshMs);
  }
})();
