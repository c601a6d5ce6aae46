// Bedside charts: what needs a pointer on the server-drawn SVG charts (web/charts.py).
// - Point at or tap a lane: a cursor line across every lane of the timeline and the values at
//   that time (activity, sleep state, the nearest event, heart and breathing rate) in the readout.
// - Drag across a lane: zoom the Night page to that stretch (?from=HH:MM:SS&to=HH:MM:SS).
// - Tap an event mark: open that event (?type=<type>&at=HH:MM:SS; the server finds it).
// - Trends: the night under the pointer and its value.
// - Tonight: the last-hour chart is fetched again from the server every 30 s.
// - Time axes: on a narrow screen, labels that would overlap are thinned to every 2nd, 3rd, ...
//   (the last kept), so hours and dates stay legible on a phone.
// Each chart carries its values as data-* attributes; times are shown in the Pi's local time
// (data-utc-offset-min), like the axis labels the server drew. Text goes in with textContent only.
"use strict";

(function () {
  const DRAG_MIN_PX = 8;
  const LIVE_REFRESH_MS = 30000;
  const STATES = { a: "asleep", w: "awake in bed", o: "out of bed" };

  function nums(text) {
    if (!text) {
      return [];
    }
    return text.split(",").map((v) => (v === "" ? null : Number(v)));
  }

  // Parsed data-* of a chart, kept on the element.
  function info(svg) {
    if (!svg._bedside) {
      const d = svg.dataset;
      svg._bedside = {
        name: d.chart,
        t0: Number(d.t0),
        t1: Number(d.t1),
        offsetMin: Number(d.utcOffsetMin || 0),
        xs: nums(d.xs),
        ys: d.chart === "sleep" ? (d.ys || "").split(",") : nums(d.ys),
        dates: d.dates ? d.dates.split(",") : [],
        unit: d.unit || "",
      };
    }
    return svg._bedside;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // HH:MM:SS on the Pi's clock for a UTC time in ms.
  function clock(ms, offsetMin) {
    const d = new Date(ms + offsetMin * 60000);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  // Index of the last x <= s (xs ascending); -1 before the first.
  function lastAtOrBefore(xs, s) {
    let lo = 0;
    let hi = xs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] <= s) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  function nearest(xs, s) {
    const i = lastAtOrBefore(xs, s);
    if (i < 0) {
      return xs.length ? 0 : -1;
    }
    if (i + 1 < xs.length && xs[i + 1] - s < s - xs[i]) {
      return i + 1;
    }
    return i;
  }

  function fraction(svg, clientX) {
    const r = svg.getBoundingClientRect();
    return Math.min(Math.max((clientX - r.left) / r.width, 0), 1);
  }

  // The event row under the pointer and the nearest of its events within a few pixels.
  function eventAt(svg, clientX, clientY, tolerancePx) {
    const c = info(svg);
    const r = svg.getBoundingClientRect();
    const rows = svg.querySelectorAll("g.row");
    if (!rows.length) {
      return null;
    }
    const index = Math.min(Math.floor(((clientY - r.top) / r.height) * rows.length), rows.length - 1);
    const row = rows[Math.max(index, 0)];
    if (!row._starts) {
      row._starts = nums(row.dataset.starts);
    }
    const spanS = (c.t1 - c.t0) / 1000;
    const s = fraction(svg, clientX) * spanS;
    const i = nearest(row._starts, s);
    if (i < 0 || Math.abs(row._starts[i] - s) > (tolerancePx / r.width) * spanS) {
      return null;
    }
    const label = svg.closest(".lane").querySelector('.row-label[data-type="' + row.dataset.type + '"]');
    return {
      type: row.dataset.type,
      label: label ? label.textContent : row.dataset.type,
      ms: c.t0 + row._starts[i] * 1000,
    };
  }

  function valueText(c, s) {
    if (c.name === "activity") {
      const i = lastAtOrBefore(c.xs, s);
      return i < 0 || s - c.xs[i] > 60 ? null : "activity " + c.ys[i];
    }
    if (c.name === "sleep") {
      const i = lastAtOrBefore(c.xs, s);
      return i < 0 ? null : STATES[c.ys[i]] || null;
    }
    if (c.name === "heart" || c.name === "breath") {
      const i = nearest(c.xs, s);
      if (i < 0 || c.ys[i] === null || Math.abs(c.xs[i] - s) > Math.max(120, ((c.t1 - c.t0) / 1000) * 0.01)) {
        return null;
      }
      return (c.name === "heart" ? "heart " : "breathing ") + c.ys[i] + " /min";
    }
    return null;
  }

  function group(svg) {
    return svg.closest("[data-timeline]") || svg.closest(".lane");
  }

  function readoutFor(svg) {
    const card = svg.closest(".card");
    return card ? card.querySelector(".readout") : null;
  }

  function clearCursors(root) {
    for (const el of root.querySelectorAll(".cursor, .selection")) {
      el.remove();
    }
  }

  function place(lane, cls, leftPx, widthPx) {
    const chart = lane.querySelector("svg.chart");
    const el = document.createElement("div");
    el.className = cls;
    el.style.left = chart.offsetLeft + leftPx + "px";
    if (widthPx !== undefined) {
      el.style.width = widthPx + "px";
    }
    lane.append(el);
  }

  function showTimeline(svg, clientX, clientY) {
    const c = info(svg);
    const root = group(svg);
    const frac = fraction(svg, clientX);
    const s = (frac * (c.t1 - c.t0)) / 1000;
    const parts = [clock(c.t0 + s * 1000, c.offsetMin)];
    for (const other of root.querySelectorAll("svg.chart")) {
      const text = valueText(info(other), s);
      if (text) {
        parts.push(text);
      }
    }
    if (c.name === "events") {
      const ev = eventAt(svg, clientX, clientY, 6);
      if (ev) {
        parts.push(ev.label + " at " + clock(ev.ms, c.offsetMin));
      }
    }
    clearCursors(root);
    for (const lane of root.querySelectorAll(".lane")) {
      const chart = lane.querySelector("svg.chart");
      place(lane, "cursor", frac * chart.getBoundingClientRect().width);
    }
    const out = readoutFor(svg);
    if (out) {
      out.textContent = parts.join(" · ");
    }
  }

  function showTrend(svg, clientX) {
    const c = info(svg);
    if (!c.xs.length) {
      return;
    }
    const i = Math.min(Math.floor(fraction(svg, clientX) * c.xs.length), c.xs.length - 1);
    const caption = svg.closest("figure").querySelector("figcaption");
    const title = caption ? caption.firstChild.textContent.trim() : c.name;
    const value = c.ys[i] === null ? "no value" : c.ys[i] + (c.unit === "%" ? " %" : " " + c.unit);
    const out = readoutFor(svg);
    if (out) {
      out.textContent = c.dates[i] + ": " + title + " " + value;
    }
    const lane = svg.closest(".lane");
    clearCursors(lane);
    place(lane, "cursor", ((i + 0.5) / c.xs.length) * svg.getBoundingClientRect().width);
  }

  function timeline(svg) {
    return svg && svg.dataset.t0 !== undefined && svg.dataset.chart !== "snippet";
  }

  let drag = null;

  document.addEventListener("pointerdown", (e) => {
    const svg = e.target.closest ? e.target.closest("svg.chart") : null;
    if (!timeline(svg)) {
      return;
    }
    drag = { svg: svg, x: e.clientX, y: e.clientY, moved: false };
  });

  document.addEventListener("pointermove", (e) => {
    const svg = e.target.closest ? e.target.closest("svg.chart") : null;
    if (drag && Math.abs(e.clientX - drag.x) >= DRAG_MIN_PX) {
      drag.moved = true;
      const r = drag.svg.getBoundingClientRect();
      const a = Math.min(Math.max(Math.min(drag.x, e.clientX) - r.left, 0), r.width);
      const b = Math.min(Math.max(Math.max(drag.x, e.clientX) - r.left, 0), r.width);
      const root = group(drag.svg);
      clearCursors(root);
      for (const lane of root.querySelectorAll(".lane")) {
        place(lane, "selection", a, b - a);
      }
      return;
    }
    if (timeline(svg)) {
      showTimeline(svg, e.clientX, e.clientY);
    } else if (svg && svg.dataset.chart.startsWith("trend-")) {
      showTrend(svg, e.clientX);
    }
  });

  document.addEventListener("pointerup", (e) => {
    const d = drag;
    drag = null;
    if (!d) {
      return;
    }
    const c = info(d.svg);
    const page = document.getElementById("night-page");
    if (d.moved) {
      if (!page) {
        clearCursors(group(d.svg));
        return;
      }
      const f0 = fraction(d.svg, Math.min(d.x, e.clientX));
      const f1 = fraction(d.svg, Math.max(d.x, e.clientX));
      const span = c.t1 - c.t0;
      const from = clock(c.t0 + f0 * span, c.offsetMin);
      const to = clock(c.t0 + Math.max(f1 * span, f0 * span + 60000), c.offsetMin);
      goTo(page.dataset.nightId, { from: from, to: to }, "#timeline");
      return;
    }
    showTimeline(d.svg, e.clientX, e.clientY);
    if (c.name === "events") {
      const ev = eventAt(d.svg, e.clientX, e.clientY, e.pointerType === "touch" ? 14 : 6);
      const nightId = page ? page.dataset.nightId : d.svg.closest("[data-night-id]").dataset.nightId;
      if (ev && nightId) {
        goTo(nightId, { type: ev.type, at: clock(ev.ms, c.offsetMin) }, "#event");
      }
    }
  });

  document.addEventListener("pointercancel", () => {
    drag = null;
  });

  function goTo(nightId, params, hash) {
    const url = new URL("/night/" + encodeURIComponent(nightId), window.location.href);
    const here = new URLSearchParams(window.location.search);
    if (params.type && here.get("from")) {
      params.from = here.get("from");
      params.to = here.get("to") || "";
    }
    for (const [k, v] of Object.entries(params)) {
      if (v) {
        url.searchParams.set(k, v);
      }
    }
    window.location.assign(url.pathname + url.search + hash);
  }

  // Time-axis labels: inside the axis; keep every k-th (counted back from the last) for the smallest k at which
  // none overlaps the next; the server draws them all, for a wide screen.
  const LABEL_GAP_PX = 4;
  function thinLabels(root) {
    for (const axis of root.querySelectorAll("svg.x-axis")) {
      const labels = Array.from(axis.querySelectorAll("text.tick-label"));
      for (const t of labels) {
        t.classList.remove("thinned");
        t.dataset.anchor = t.dataset.anchor || t.getAttribute("text-anchor") || "start";
        t.setAttribute("text-anchor", t.dataset.anchor);
      }
      // A label centred on a tick near an end would stick out of the axis: align it to that end.
      const edge = axis.getBoundingClientRect();
      for (const t of labels) {
        const r = t.getBoundingClientRect();
        if (r.width > 0 && r.left < edge.left) {
          t.setAttribute("text-anchor", "start");
        } else if (r.width > 0 && r.right > edge.right) {
          t.setAttribute("text-anchor", "end");
        }
      }
      const boxes = labels.map((t) => t.getBoundingClientRect());
      if (!boxes.length || boxes[0].width === 0) {
        continue; // not laid out (a hidden section)
      }
      const order = labels.map((_, i) => i).sort((a, b) => boxes[a].left - boxes[b].left);
      const last = order.length - 1;
      for (let k = 1; k <= order.length; k++) {
        const kept = order.filter((_, j) => (last - j) % k === 0);
        const clear = kept.every((i, j) => j === 0 || boxes[kept[j - 1]].right + LABEL_GAP_PX <= boxes[i].left);
        if (clear) {
          for (const i of order) {
            labels[i].classList.toggle("thinned", !kept.includes(i));
          }
          break;
        }
      }
    }
  }
  thinLabels(document);
  let thinPending = false;
  window.addEventListener("resize", () => {
    if (!thinPending) {
      thinPending = true;
      window.requestAnimationFrame(() => {
        thinPending = false;
        thinLabels(document);
      });
    }
  });

  // Tonight: fetch the last-hour chart again every 30 s while the page is visible.
  const live = document.getElementById("live-chart");
  if (live && live.dataset.chartUrl) {
    const refresh = async () => {
      if (document.hidden) {
        return;
      }
      try {
        const response = await fetch(live.dataset.chartUrl, { cache: "no-store" });
        if (!response.ok) {
          return;
        }
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const body = doc.querySelector(".chart-body");
        const old = live.querySelector(".chart-body");
        if (body && old) {
          old.replaceWith(document.importNode(body, true));
          live.hidden = !body.querySelector("svg.chart");
          thinLabels(live);
          live.dataset.refreshed = String(Number(live.dataset.refreshed || 0) + 1);
        }
      } catch (err) {
        console.warn("Bedside chart refresh failed:", err);
      }
    };
    window.setInterval(refresh, LIVE_REFRESH_MS);
    document.addEventListener("visibilitychange", refresh);
  }
})();
