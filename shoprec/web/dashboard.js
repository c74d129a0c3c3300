// shoprec dashboard (#/dashboard): the online measures of GET /stats as plain SVG line charts,
// one line per variant, per UTC day; the experiment's state and the test's verdict. No library,
// no build step: the page's el() helper and SVG elements made with createElementNS.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#0f766e", "#c2410c", "#4338ca", "#a16207", "#be185d", "#15803d"];
const CHARTS = [
  { key: "lists", title: "Lists shown", format: (v) => String(Math.round(v)) },
  { key: "ctr", title: "Click-through rate", rate: true },
  { key: "add_to_cart_rate", title: "Add-to-cart rate", rate: true },
  { key: "conversion_rate", title: "Conversion rate", rate: true },
  { key: "revenue", title: "Credited revenue", format: (v) => v.toFixed(2) },
  { key: "items_per_order", title: "Items per order", format: (v) => v.toFixed(2) },
  { key: "coverage", title: "Catalogue coverage", rate: true },
];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

function pct(v) {
  return v === null || v === undefined ? "–" : `${(100 * v).toFixed(2)}%`;
}

function measureOf(row, key) {
  const v = row[key];
  return v !== null && typeof v === "object" ? v.value : v;
}

// One chart: x = days, y = the measure, a polyline (and dots) per variant.
function lineChart(spec, days, variants, rows) {
  const W = 360, H = 190, L = 62, R = 22, T = 12, B = 34;
  const value = (day, variant) => {
    const row = rows.find((r) => r.day === day && r.variant === variant);
    const v = row ? measureOf(row, spec.key) : null;
    return v === null || v === undefined ? null : v;
  };
  const all = [];
  for (const d of days) for (const v of variants) { const x = value(d, v); if (x !== null) all.push(x); }
  // an all-zero rate gets a 1% axis, not one whose ticks all round to "0.01%"
  const peak = Math.max(...all, spec.rate ? 0.01 : 1) * 1.1;
  const top = spec.rate ? Math.min(1, peak) : peak;  // a rate's axis never passes 100%
  const fmt = spec.rate ? pct : spec.format;
  const xAt = (i) => L + (days.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (days.length - 1));
  const yAt = (v) => T + (H - T - B) * (1 - v / top);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": spec.title, "data-measure": spec.key });
  for (const f of [0, 0.5, 1]) {
    const y = yAt(top * f);
    chart.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }),
      svg("text", { x: L - 4, y: y + 4, "text-anchor": "end", class: "tick", text: fmt(top * f) }));
  }
  const step = Math.max(1, Math.ceil(days.length / 6));
  days.forEach((d, i) => {
    if (i % step === 0 || i === days.length - 1) {
      chart.append(svg("text", { x: xAt(i), y: H - 12, "text-anchor": "middle", class: "tick", text: d.slice(5) }));
    }
  });
  variants.forEach((variant, vi) => {
    const colour = COLOURS[vi % COLOURS.length];
    const points = days.map((d, i) => [i, value(d, variant)]).filter(([, v]) => v !== null);
    if (points.length > 1) {
      chart.append(svg("polyline", { points: points.map(([i, v]) => `${xAt(i)},${yAt(v)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 2, "data-variant": variant }));
    }
    for (const [i, v] of points) {
      chart.append(svg("circle", { cx: xAt(i), cy: yAt(v), r: 3, fill: colour },
        svg("title", { text: `${variant} ${days[i]}: ${fmt(v)}` })));
    }
  });
  return el("figure", { class: "chart-box" }, el("figcaption", { text: spec.title }), chart);
}

function legend(variants) {
  return el("div", { class: "legend" }, ...variants.map((v, i) =>
    el("span", { class: "legend-item" }, el("span", { class: `swatch swatch-${i % COLOURS.length}` }), v)));
}

function totalsTable(groups, surface) {
  const head = ["variant", "lists", "CTR [95% CI]", "add-to-cart", "conversion", "revenue", "items/order", "coverage"];
  const ci = (m) => (m && m.value !== null ? `${pct(m.value)} [${pct(m.low)}, ${pct(m.high)}]` : "–");
  return el("table", { class: "totals" },
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...groups.filter((g) => g.surface === surface).map((g) => el("tr", { "data-variant": g.variant },
      el("td", { text: g.variant }), el("td", { text: String(g.lists) }), el("td", { text: ci(g.ctr) }),
      el("td", { text: ci(g.add_to_cart_rate) }), el("td", { text: ci(g.conversion_rate) }),
      el("td", { text: g.revenue.toFixed(2) }),
      el("td", { text: g.items_per_order === null ? "–" : g.items_per_order.toFixed(2) }),
      el("td", { text: pct(g.coverage) })))));
}

function experimentBox(stats) {
  const exp = stats.experiment;
  const verdict = stats.verdict || {};
  if (!exp) {
    return el("section", { class: "experiment" }, el("p", { class: "muted", text: "No experiment yet: " +
      "POST /experiments (or SHOPREC_EXPERIMENTS_FILE) starts one." }));
  }
  const variants = exp.variants.map((v) => {
    const o = Object.entries(v.overrides || {}).filter(([, x]) => x !== null).map(([k, x]) => `${k}=${x}`);
    return el("li", {}, el("b", { text: v.name }), ` · share ${v.share}`, o.length ? ` · ${o.join(", ")}` : " · server settings");
  });
  return el("section", { class: "experiment" },
    el("div", { class: "experiment-head" },
      el("h2", {}, "Experiment ", el("span", { class: "accent", text: exp.name })),
      el("span", { class: `badge state-${exp.state}`, id: "experiment-state", text: exp.state }),
      exp.winner ? el("span", { class: "muted", text: `winner promoted: ${exp.winner}` }) : null),
    el("ul", { class: "variants" }, ...variants),
    el("p", { id: "verdict", class: verdict.significant ? "verdict significant" : "verdict",
      "data-winner": verdict.winner || "", text: verdict.text || "" }),
    el("p", { class: "muted small", text: stats.method }));
}

async function dashboardView(surface) {
  view.replaceChildren(el("h1", { text: "Online dashboard" }), el("p", { class: "muted", text: "Loading…" }));
  let stats;
  try {
    stats = await api("/stats");
  } catch (error) {
    view.replaceChildren(el("h1", { text: "Online dashboard" }), el("p", { class: "error", text: error.message }));
    return;
  }
  const surfaces = [...new Set(stats.groups.map((g) => g.surface))];
  const chosen = surfaces.includes(surface) ? surface : "all";
  const variants = stats.experiment ? stats.experiment.variants.map((v) => v.name)
    : [...new Set(stats.groups.map((g) => g.variant))];
  const rows = stats.daily.filter((r) => r.surface === chosen);
  const days = [...new Set(rows.map((r) => r.day))].sort();
  const picker = el("nav", { class: "surfaces" }, ...surfaces.map((s) =>
    el("a", { href: `#/dashboard/${encodeURIComponent(s)}`, class: s === chosen ? "chosen" : null, text: s })));
  const charts = days.length
    ? el("div", { class: "charts" }, ...CHARTS.map((spec) => lineChart(spec, days, variants, rows)))
    : el("p", { class: "muted", text: "Nothing shown yet: send impression events naming each answer's rec_id." });
  view.replaceChildren(el("h1", { text: "Online dashboard" }), experimentBox(stats), picker, legend(variants),
    totalsTable(stats.groups, chosen), charts);
}
