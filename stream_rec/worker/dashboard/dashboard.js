// The worker's dashboard: polls /stats once a second, charts the figures (uPlot), and opens a user's inspector
// from /users/{id}. Every id and value from the server is written as text (textContent), never as HTML.
(function () {
  "use strict";

  const POLL_MS = 1000;
  const KEEP = 600; // points per chart: ten minutes at one a second
  const SEQUENCE_SHOWN = 20;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (typeof value !== "number") return String(value);
    return value.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 2 : digits });
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 90) return fmt(seconds, 1) + " s ago";
    if (seconds < 5400) return fmt(seconds / 60, 1) + " min ago";
    return fmt(seconds / 3600, 1) + " h ago";
  }

  // -- charts ---------------------------------------------------------------------------------------------------

  const CHARTS = [
    { id: "rate", title: "events/s", series: [["events/s", (s) => s.events_per_s, "#2563eb"]] },
    { id: "lag", title: "consumer lag (events waiting)", series: [["lag", (s) => s.lag_total, "#dc2626"]] },
    {
      id: "latency", title: "event to recommendation, ms (last minute)",
      series: [
        ["p50", (s) => ms(s.latency_p50_s), "#16a34a"],
        ["p99", (s) => ms(s.latency_p99_s), "#f59e0b"],
      ],
    },
    {
      id: "freshness", title: "model freshness, s (arrival to a snapshot that learned it)",
      series: [
        ["p50", (s) => s.freshness_p50_s, "#7c3aed"],
        ["p99", (s) => s.freshness_p99_s, "#db2777"],
      ],
    },
    { id: "loss", title: "training loss (last step)", series: [["loss", (s) => s.loss, "#0891b2"]] },
    {
      id: "hits", title: "hit rate@k as served",
      series: [
        ["last minute", (s) => s.hit_rate_1m, "#2563eb"],
        ["since start", (s) => s.hit_rate, "#94a3b8"],
      ],
    },
  ];

  function ms(seconds) {
    return seconds === null || seconds === undefined ? null : seconds * 1000;
  }

  const data = CHARTS.map((c) => [[], ...c.series.map(() => [])]);
  const charts = {};

  function makeCharts() {
    const holder = document.getElementById("charts");
    CHARTS.forEach((c, n) => {
      const box = el("div", null, "chart");
      box.id = "chart-" + c.id;
      holder.appendChild(box);
      const width = Math.max(400, box.clientWidth - 12);
      charts[c.id] = new uPlot(
        {
          title: c.title, width: width, height: 200,
          scales: { x: { time: true } },
          series: [{}, ...c.series.map(([label, , stroke]) => ({ label: label, stroke: stroke, width: 2, spanGaps: true }))],
          axes: [{}, { size: 60 }],
        },
        data[n],
        box,
      );
    });
  }

  function record(stats) {
    const now = Date.now() / 1000;
    CHARTS.forEach((c, n) => {
      const columns = data[n];
      columns[0].push(now);
      c.series.forEach(([, read], i) => {
        const v = read(stats);
        columns[i + 1].push(v === undefined ? null : v);
      });
      if (columns[0].length > KEEP) columns.forEach((col) => col.shift());
      charts[c.id].setData(columns);
    });
    window.streamRec.samples += 1;
  }

  // -- figures now ----------------------------------------------------------------------------------------------

  function tiles(stats) {
    const holder = document.getElementById("tiles");
    const rows = [
      ["events", fmt(stats.events, 0)],
      ["recommendations", fmt(stats.recommendations, 0)],
      ["dead-lettered", fmt(stats.invalid, 0)],
      ["duplicates", fmt(stats.duplicates, 0)],
      ["events/s", fmt(stats.events_per_s, 1)],
      ["lag", fmt(stats.lag_total, 0)],
      ["model", stats.model_version],
      ["snapshot", ago(stats.snapshot_age_s)],
      ["steps (skipped)", fmt(stats.steps, 0) + " (" + fmt(stats.skipped_steps, 0) + ")"],
      ["shed unlearned", fmt(stats.learn_dropped, 0)],
      ["drift alarms", fmt(stats.drift_alarms, 0)],
      ["HR@k / NDCG@k", fmt(stats.hit_rate, 4) + " / " + fmt(stats.ndcg, 4)],
      ["checkpoint", ago(stats.checkpoint_age_s)],
      ["partitions", (stats.partitions || []).join(", ") || "–"],
    ];
    holder.replaceChildren(
      ...rows.map(([label, value]) => {
        const tile = el("div", null, "tile");
        tile.dataset.name = label;
        tile.append(el("div", label, "label"), el("div", value, "value"));
        return tile;
      }),
    );
  }

  function top(stats) {
    const body = document.querySelector("#top tbody");
    const items = stats.top_recommended || [];
    if (!items.length) {
      body.replaceChildren(rowOf([el("td", "nothing recommended in the last minute", "note")]));
      return;
    }
    body.replaceChildren(
      ...items.map((it, i) => rowOf([el("td", i + 1, "num"), el("td", it.item_id), el("td", fmt(it.count, 0), "num")])),
    );
  }

  function rowOf(cells) {
    const tr = el("tr");
    tr.append(...cells);
    return tr;
  }

  async function poll() {
    const status = document.getElementById("status");
    try {
      const response = await fetch("/stats", { cache: "no-store" });
      const stats = await response.json();
      record(stats);
      tiles(stats);
      top(stats);
      status.textContent = "live · " + new Date().toLocaleTimeString();
      status.classList.remove("down");
    } catch (err) {
      status.textContent = "worker unreachable: " + err;
      status.classList.add("down");
    }
  }

  // -- the user inspector ---------------------------------------------------------------------------------------

  function bar(parts) {
    const box = el("div", null, "bar");
    box.title = parts.map(([name, v]) => name + " " + Math.round(v * 100) + "%").join(", ");
    parts.forEach(([name, v]) => {
      const span = el("span", null, name);
      span.style.width = Math.max(0, Math.min(1, v)) * 100 + "%";
      box.appendChild(span);
    });
    return box;
  }

  function table(headers, rows) {
    const t = el("table");
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", h)));
    const thead = el("thead");
    thead.appendChild(head);
    const body = el("tbody");
    rows.forEach((cells) => body.appendChild(rowOf(cells)));
    t.append(thead, body);
    return t;
  }

  function showUser(user) {
    const view = document.getElementById("user-view");
    const rec = user.recommendation;
    const parts = [el("h3", "User " + user.user_id)];
    parts.push(el("p", fmt(user.events, 0) + " events" + (rec ? " · served by " + rec.model_version + " (" +
      rec.strategy + ") at " + new Date(rec.published_ts * 1000).toLocaleTimeString() : ""), "note"));
    if (rec) {
      const legend = el("p", "Each item's share of the model's modes (by " + user.modes_by + "):", "note legend");
      ["own", "transitions", "explore"].forEach((m) => legend.append(el("span", null, m), document.createTextNode(m)));
      parts.push(el("h4", "Recommendations"), legend);
      parts.push(table(["#", "item", "score", "modes"], rec.items.map((it, i) => [
        el("td", i + 1, "num"), el("td", it.item_id), el("td", fmt(it.score, 4), "num"),
        (() => {
          const td = el("td");
          if (it.modes) td.appendChild(bar([["own", it.modes.own], ["transitions", it.modes.transitions], ["explore", it.modes.explore]]));
          else td.appendChild(el("span", "–", "note"));
          return td;
        })(),
      ])));
      if (rec.explain && rec.explain.length) {
        parts.push(el("h4", "Why: the history items that weighed most"));
        parts.push(table(["item", "weight"], rec.explain.map((e) => {
          const td = el("td");
          td.appendChild(bar([["weight", e.weight]]));
          td.title = fmt(e.weight, 4);
          return [el("td", e.item_id), td];
        })));
      }
    } else {
      parts.push(el("p", "No recommendation for this user among the last users served.", "note"));
    }
    const kept = (user.sequence || []).length;
    const seq = (user.sequence || []).slice(-SEQUENCE_SHOWN).reverse();
    parts.push(el("h4", "Sequence, newest first (" + seq.length + " of the " + kept + " kept; all in /users/" +
      user.user_id + ")"));
    parts.push(table(["time", "event", "item", "context"], seq.map((s) => [
      el("td", new Date(s.ts * 1000).toLocaleString()), el("td", s.event), el("td", s.item_id),
      el("td", s.context ? JSON.stringify(s.context) : "", "note"),
    ])));
    view.replaceChildren(...parts);
  }

  async function openUser(id) {
    const view = document.getElementById("user-view");
    if (!id) return;
    view.replaceChildren(el("p", "loading " + id + "…", "note"));
    try {
      const response = await fetch("/users/" + encodeURIComponent(id), { cache: "no-store" });
      const body = await response.json();
      if (!response.ok) {
        view.replaceChildren(el("p", body.error || response.statusText, "error"));
        return;
      }
      showUser(body);
    } catch (err) {
      view.replaceChildren(el("p", "could not load the user: " + err, "error"));
    }
  }

  window.streamRec = { charts: charts, samples: 0, openUser: openUser };
  makeCharts();
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("user").value.trim();
    history.replaceState(null, "", "#user=" + encodeURIComponent(id));
    openUser(id);
  });
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("user");
  if (fromHash) {
    document.getElementById("user").value = fromHash;
    openUser(fromHash);
  }
  poll();
  setInterval(poll, POLL_MS);
})();
