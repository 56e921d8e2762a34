/* Driftline console: theme toggle, charts (Plotly figures from data-chart attributes) and sortable tables.
   Loaded in <head> without defer so that a stored theme applies before the first paint; everything that
   touches the page waits for DOMContentLoaded (deferred plotly.min.js has run by then). No inline script:
   the Content-Security-Policy allows only files from this origin. */
(function () {
  "use strict";

  var root = document.documentElement;
  var THEME_KEY = "driftline-theme";

  function storedTheme() {
    try {
      var t = window.localStorage.getItem(THEME_KEY);
      return t === "dark" || t === "light" ? t : null;
    } catch (e) {
      return null;
    }
  }

  function preferredTheme() {
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function currentTheme() {
    return root.getAttribute("data-theme") || preferredTheme();
  }

  var initial = storedTheme();
  if (initial) {
    root.setAttribute("data-theme", initial);
  }

  function cssVar(name) {
    return window.getComputedStyle(root).getPropertyValue(name).trim();
  }

  // ------------------------------------------------------------------ charts
  function axis(base, grid, fg) {
    var out = {};
    var key;
    for (key in base || {}) {
      if (Object.prototype.hasOwnProperty.call(base, key)) {
        out[key] = base[key];
      }
    }
    out.gridcolor = grid;
    out.linecolor = grid;
    out.zerolinecolor = grid;
    out.tickfont = { color: fg };
    out.automargin = true;
    return out;
  }

  function themedLayout(layout, empty) {
    var fg = cssVar("--fg") || "#111827";
    var grid = cssVar("--grid") || "#e5e7eb";
    var out = {};
    var key;
    for (key in layout || {}) {
      if (Object.prototype.hasOwnProperty.call(layout, key)) {
        out[key] = layout[key];
      }
    }
    out.paper_bgcolor = "rgba(0,0,0,0)";
    out.plot_bgcolor = "rgba(0,0,0,0)";
    out.font = { color: fg, family: "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", size: 12 };
    out.margin = { l: 56, r: 16, t: 16, b: 48 };
    out.xaxis = axis(out.xaxis, grid, fg);
    out.yaxis = axis(out.yaxis, grid, fg);
    out.legend = { orientation: "h", y: -0.22, font: { color: fg } };
    out.hoverlabel = { font: { family: out.font.family } };
    if (empty) {
      out.annotations = [{ text: "No data in this range", showarrow: false, xref: "paper", yref: "paper",
        x: 0.5, y: 0.5, font: { color: fg, size: 14 } }];
      out.xaxis.visible = false;
      out.yaxis.visible = false;
    }
    return out;
  }

  function isEmpty(data) {
    var i;
    for (i = 0; i < data.length; i++) {
      var t = data[i];
      if ((t.y && t.y.length) || (t.x && t.x.length)) {
        return false;
      }
    }
    return true;
  }

  var charts = [];

  function renderChart(div) {
    var fig;
    try {
      fig = JSON.parse(div.getAttribute("data-chart") || "{}");
    } catch (e) {
      div.setAttribute("data-rendered", "false");
      return;
    }
    var data = fig.data || [];
    var entry = { div: div, data: data, layout: fig.layout || {}, empty: isEmpty(data) };
    charts.push(entry);
    if (!window.Plotly) {
      div.textContent = "The chart library did not load.";
      div.className += " chart-fallback";
      div.setAttribute("data-rendered", "false");
      return;
    }
    window.Plotly.newPlot(div, data, themedLayout(entry.layout, entry.empty),
      { displayModeBar: false, responsive: true, displaylogo: false }).then(function () {
      div.setAttribute("data-rendered", "true");
    });
  }

  function restyleCharts() {
    if (!window.Plotly) {
      return;
    }
    charts.forEach(function (c) {
      window.Plotly.relayout(c.div, themedLayout(c.layout, c.empty));
    });
  }

  // ------------------------------------------------------------------ theme toggle
  function updateToggle() {
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("aria-pressed", currentTheme() === "dark" ? "true" : "false");
    }
  }

  function toggleTheme() {
    var next = currentTheme() === "dark" ? "light" : "dark";
    root.setAttribute("data-theme", next);
    try {
      window.localStorage.setItem(THEME_KEY, next);
    } catch (e) {
      /* private mode: the choice lasts for this page */
    }
    updateToggle();
    restyleCharts();
    announce(next === "dark" ? "Dark theme" : "Light theme");
  }

  function announce(text) {
    var live = document.getElementById("live");
    if (live) {
      live.textContent = text;
    }
  }

  // ------------------------------------------------------------------ sortable tables
  function cellValue(row, key, type) {
    var cell = row.querySelector('[data-testid="' + key + '"]');
    var raw = cell ? cell.getAttribute("data-value") : null;
    if (type === "text") {
      return raw === null ? "" : raw;
    }
    if (raw === null || raw === "") {
      return null;
    }
    var n = parseFloat(raw);
    return isNaN(n) ? null : n;
  }

  function sortBy(button) {
    var th = button.closest("th");
    var table = button.closest("table");
    var body = table && table.tBodies[0];
    if (!th || !body) {
      return;
    }
    var key = button.getAttribute("data-sort");
    var type = button.getAttribute("data-type") || "number";
    var current = th.getAttribute("aria-sort");
    var dir = current === "descending" ? "ascending" : current === "ascending" ? "descending"
      : (type === "text" ? "ascending" : "descending");
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var va = cellValue(a, key, type);
      var vb = cellValue(b, key, type);
      if (va === null && vb === null) { return 0; }
      if (va === null) { return 1; }  // missing values last, either way
      if (vb === null) { return -1; }
      if (type === "text") { return sign * va.localeCompare(vb); }
      return sign * (va - vb);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.querySelectorAll("th[aria-sort]"), function (h) {
      h.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", dir);
    announce("Sorted by " + button.textContent.trim() + ", " + dir);
  }

  // ------------------------------------------------------------------ range controls
  function wireRange() {
    var select = document.getElementById("range");
    ["start", "end"].forEach(function (id) {
      var input = document.getElementById(id);
      if (select && input) {
        input.addEventListener("change", function () { select.value = "custom"; });
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    updateToggle();
    var toggle = document.getElementById("theme-toggle");
    if (toggle) {
      toggle.addEventListener("click", toggleTheme);
    }
    Array.prototype.forEach.call(document.querySelectorAll("button.sort"), function (b) {
      b.addEventListener("click", function () { sortBy(b); });
    });
    wireRange();
    Array.prototype.forEach.call(document.querySelectorAll("div.chart[data-chart]"), renderChart);
    if (window.matchMedia) {
      var mq = window.matchMedia("(prefers-color-scheme: dark)");
      var onChange = function () {
        if (!storedTheme()) { updateToggle(); restyleCharts(); }
      };
      if (mq.addEventListener) { mq.addEventListener("change", onChange); }
    }
  });
}());
