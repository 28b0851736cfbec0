// mmat viewer: vanilla JS, hash routes #/list?..., #/sample/N, #/stats. Data is inserted with
// textContent / SVG attributes only, never as HTML, so record text cannot inject markup.
"use strict";

const PAGE = 50;
const SVG = "http://www.w3.org/2000/svg";
const FILTERS = ["q", "status", "source", "operator", "reflection", "reason", "qmin", "qmax"];
let facetsLoaded = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function showError(error) {
  const box = document.getElementById("error");
  box.hidden = false;
  box.textContent = "Error: " + (error && error.message ? error.message : error);
}

function show(viewId) {
  for (const id of ["list-view", "sample-view", "stats-view"]) document.getElementById(id).hidden = id !== viewId;
  document.getElementById("nav-list").classList.toggle("active", viewId !== "stats-view");
  document.getElementById("nav-stats").classList.toggle("active", viewId === "stats-view");
  document.getElementById("error").hidden = true;
}

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/list";
  const [path, query] = hash.split("?");
  return { path: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

async function route() {
  const { path, params } = parseRoute();
  try {
    if (path[0] === "sample" && /^\d+$/.test(path[1] || "")) await renderSample(Number(path[1]));
    else if (path[0] === "stats") await renderStats();
    else await renderList(params);
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------------------------------------
// List

async function loadFacets() {
  if (facetsLoaded) return;
  const facets = await getJSON("/api/facets");
  for (const select of document.querySelectorAll("#filters select[data-facet]")) {
    for (const value of facets[select.dataset.facet] || []) select.append(el("option", { value, text: value }));
  }
  facetsLoaded = true;
  const stats = await getJSON("/api/stats");
  document.getElementById("build-info").textContent =
    `${stats.accepted} accepted · ${stats.rejected} rejected · ${stats.qas} QA pairs`;
}

function filtersToParams(offset) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = document.getElementById("f-" + name).value.trim();
    if (value) params.set(name, value);
  }
  if (offset) params.set("offset", String(offset));
  return params;
}

function paramsToFilters(params) {
  for (const name of FILTERS) document.getElementById("f-" + name).value = params.get(name) || "";
}

async function renderList(params) {
  show("list-view");
  await loadFacets();
  paramsToFilters(params);
  const offset = Number(params.get("offset") || 0);
  const api = new URLSearchParams(params);
  api.set("limit", String(PAGE));
  if (api.has("qmin")) api.set("qmin", params.get("qmin"));
  const data = await getJSON("/api/list?" + api.toString());
  const tbody = document.querySelector("#list-table tbody");
  tbody.replaceChildren();
  for (const item of data.items) {
    const row = el(
      "tr",
      { class: `record-row status-${item.status}`, "data-n": item.n, onclick: () => (location.hash = `#/sample/${item.n}`) },
      el("td", { text: item.n }),
      el("td", { class: "rid" }, el("a", { href: `#/sample/${item.n}`, text: item.id })),
      el("td", { text: item.source }),
      el("td", { class: "status", text: item.status === "rejected" ? `rejected: ${item.reason}` : "accepted" }),
      el("td", {}, item.operators.map((op) => el("span", { class: op === "rag" ? "badge rag" : "badge", text: op }))),
      el("td", {}, item.reflections.map((kind) => el("span", { class: "badge reflection", text: kind }))),
      el("td", { class: "quality", text: item.quality === null ? "" : item.quality.toFixed(2) }),
      el("td", { text: item.text }),
    );
    tbody.append(row);
  }
  const last = offset + data.items.length;
  document.getElementById("page-info").textContent = data.items.length
    ? `${offset + 1}–${last} of ${data.total}${data.total_exact ? "" : "+"}`
    : "no matching records";
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  prev.disabled = offset === 0;
  next.disabled = data.total_exact ? last >= data.total : false;
  prev.onclick = () => goList(Math.max(0, offset - PAGE));
  next.onclick = () => goList(offset + PAGE);
}

function goList(offset) {
  location.hash = "#/list?" + filtersToParams(offset).toString();
}

// ------------------------------------------------------------------------------------------------
// One sample

function drawFigure(image, index, boxes) {
  const figure = el("figure", { class: "image-figure", "data-image": index });
  const mine = boxes.filter((box) => box.image === index);
  const build = (width, height) => {
    const canvas = svg("svg", {
      class: "image-boxes",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      "data-width": width,
      "data-height": height,
    });
    canvas.append(svg("image", { href: image.url, x: 0, y: 0, width, height }));
    for (const box of mine) {
      let [x1, y1, x2, y2] = box.box;
      if (box.normalised) [x1, y1, x2, y2] = [x1 * width, y1 * height, x2 * width, y2 * height];
      const rect = svg("rect", {
        class: `box box-${box.kind}`,
        x: Math.min(x1, x2),
        y: Math.min(y1, y2),
        width: Math.abs(x2 - x1),
        height: Math.abs(y2 - y1),
        "data-label": box.label,
      });
      rect.append(svg("title", { text: `${box.kind}: ${box.label} [${box.box.join(", ")}]` }));
      canvas.append(rect, svg("text", { class: `box-label ${box.kind}`, x: Math.min(x1, x2) + 3, y: Math.max(Math.min(y1, y2) - 4, 12), text: box.label }));
    }
    figure.prepend(canvas);
  };
  if (image.error) figure.append(el("div", { class: "image-error", text: `${image.path}: ${image.error}` }));
  else if (image.width && image.height) build(image.width, image.height);
  else {
    const probe = new Image();
    probe.onload = () => build(probe.naturalWidth, probe.naturalHeight);
    probe.src = image.url;
  }
  const ovd = mine.filter((b) => b.kind === "ovd").length;
  const face = mine.filter((b) => b.kind === "face").length;
  figure.append(
    el("figcaption", { class: "legend" },
      el("span", { text: image.path }),
      el("span", { class: "ovd", text: `■ OVD boxes: ${ovd}` }),
      el("span", { class: "face", text: `▭ face boxes: ${face}` })),
  );
  return figure;
}

function reflectionTurns(turns) {
  const marked = new Set();
  turns.forEach((turn, i) => {
    if (turn.kind === "reflection_prompt") {
      marked.add(i);
      if (i > 0 && turns[i - 1].role === "assistant") marked.add(i - 1);
      const after = turns.findIndex((t, j) => j > i && t.role === "assistant");
      if (after >= 0) marked.add(after);
    }
    if (turn.step && turn.step.signal === "reflection") marked.add(i);
  });
  return marked;
}

function renderResult(result) {
  const node = el("div", { class: result.error ? "result error" : "result", "data-tool": result.tool },
    el("span", { class: "tool", text: result.tool }),
    result.version ? el("span", { class: "badge", text: "v " + result.version }) : null,
    result.cached ? el("span", { class: "badge", text: "cached" }) : null,
    result.error ? el("div", { text: "error: " + result.error }) : null,
    el("pre", { text: result.text || "" }));
  if (result.payload !== undefined && result.payload !== null) {
    node.append(el("details", {}, el("summary", { text: "payload" }), el("pre", { text: JSON.stringify(result.payload, null, 1) })));
  }
  return node;
}

function renderTurn(turn, reflection) {
  const classes = ["turn", `role-${turn.role}`, `kind-${turn.kind}`];
  if (reflection) classes.push("turn-reflection");
  const head = el("div", { class: "who" }, `${turn.role} · ${turn.kind}`);
  if (turn.step) {
    for (const op of turn.step.operators || []) head.append(" ", el("span", { class: "badge op-call", text: op }));
    if (turn.step.rag_query !== null && turn.step.rag_query !== undefined) head.append(" ", el("span", { class: "badge rag", text: "RAG: " + turn.step.rag_query }));
    head.append(" ", el("span", { class: turn.step.signal === "reflection" ? "badge reflection" : "badge", text: "signal " + turn.step.signal }));
  }
  const node = el("div", { class: classes.join(" ") }, head, el("pre", { text: turn.content }));
  for (const result of turn.results || []) node.append(renderResult(result));
  return node;
}

function rrPane(record) {
  const pane = el("div", { class: "pane rr-pane" }, el("h3", { text: "RR: multi-turn rationale and reflection" }));
  const trajectory = record.trajectory;
  if (!trajectory) {
    pane.append(el("p", { text: "no RR trajectory" }));
    return pane;
  }
  pane.append(el("details", { class: "system" }, el("summary", { text: "system prompt" }), el("pre", { text: trajectory.system })));
  trajectory.segments.forEach((segment, s) => {
    const box = el("div", { class: "segment", "data-segment": s }, el("h4", { text: `QA ${s + 1} (${segment.qa_id})` }));
    for (const reflection of segment.reflections || []) {
      box.append(el("div", { class: "badge reflection" }, `${reflection.kind} reflection: ${reflection.reason}`));
    }
    const marked = reflectionTurns(segment.turns);
    segment.turns.forEach((turn, i) => box.append(renderTurn(turn, marked.has(i))));
    pane.append(box);
  });
  const prov = trajectory.provenance || {};
  pane.append(el("details", {}, el("summary", { text: "provenance" }), el("pre", { text: JSON.stringify(prov, null, 1) })));
  return pane;
}

function orrPane(record) {
  const pane = el("div", { class: "pane orr-pane" }, el("h3", { text: "ORR: one-turn" }));
  const orr = record.orr;
  if (!orr) {
    pane.append(el("p", { text: "no ORR form (Integration stage off)" }));
    return pane;
  }
  pane.append(el("details", {}, el("summary", { text: "system prompt" }), el("pre", { text: orr.system })));
  for (const segment of orr.segments) {
    pane.append(
      el("h4", { text: `QA ${segment.qa_id}` }),
      el("div", { class: "turn role-user" }, el("div", { class: "who", text: "user" }), el("pre", { text: segment.user })),
      el("div", { class: "turn role-assistant" }, el("div", { class: "who", text: "assistant" }), el("pre", { text: segment.assistant })),
    );
  }
  return pane;
}

async function renderSample(n) {
  show("sample-view");
  const view = document.getElementById("sample-view");
  const data = await getJSON(`/api/record/${n}`);
  const record = data.record;
  view.replaceChildren();
  const nav = el("div", { class: "nav-links" },
    el("a", { href: "#/list", text: "← list" }),
    data.previous !== null ? el("a", { href: `#/sample/${data.previous}`, text: "‹ previous" }) : null,
    data.next !== null ? el("a", { href: `#/sample/${data.next}`, text: "next ›" }) : null);
  const head = el("div", { class: "sample-head" }, nav, el("h2", { id: "sample-id", text: record.id || `record ${n}` }));
  view.append(head);
  if (data.status === "rejected") {
    head.append(el("div", { class: "meta", text: `source ${record.source || "?"} · rejected at ${record.stage}` }));
    view.append(el("div", { class: "reject-detail" },
      el("div", {}, el("strong", { text: "reason: " }), record.reason),
      el("div", { text: record.detail || "" }),
      record.location ? el("div", { text: "location: " + record.location }) : null,
      record.raw ? el("pre", { text: record.raw }) : null));
    return;
  }
  const quality = record.quality ? `quality ${record.quality.score.toFixed(2)} (${record.quality.reason || ""})` : "no quality score";
  head.append(el("div", { class: "meta", text: `source ${record.source}${record.subset ? "/" + record.subset : ""} · licence ${record.license}${record.non_commercial ? " (NON-COMMERCIAL)" : ""} · ${quality}` }));
  const questions = el("ol", { class: "questions" });
  for (const qa of record.qas || []) questions.append(el("li", {}, el("span", { text: qa.templated_question }), " → ", el("strong", { text: qa.answer })));
  view.append(questions);
  const figures = el("div", { class: "figures" });
  data.images.forEach((image, i) => figures.append(drawFigure(image, i, data.boxes)));
  view.append(figures, el("div", { class: "panes" }, rrPane(record), orrPane(record)));
}

// ------------------------------------------------------------------------------------------------
// Statistics

function barChart(id, title, entries, { format = (v) => String(v) } = {}) {
  const width = 440, barHeight = 20, gap = 6, labelWidth = 150;
  const height = Math.max(1, entries.length) * (barHeight + gap) + 10;
  const max = Math.max(1, ...entries.map(([, v]) => v));
  const chart = svg("svg", { class: "chart", id, viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": title });
  entries.forEach(([label, value], i) => {
    const y = 5 + i * (barHeight + gap);
    const w = ((width - labelWidth - 60) * value) / max;
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + barHeight * 0.7, "text-anchor": "end", text: label }),
      svg("rect", { class: "bar", x: labelWidth, y, width: Math.max(w, value ? 1 : 0), height: barHeight, "data-label": label, "data-value": value }),
      svg("text", { x: labelWidth + w + 4, y: y + barHeight * 0.7, text: format(value) }),
    );
  });
  if (!entries.length) chart.append(svg("text", { x: 10, y: 20, text: "no data" }));
  return el("figure", {}, el("figcaption", { text: title }), chart);
}

async function renderStats() {
  show("stats-view");
  const stats = await getJSON("/api/stats");
  const view = document.getElementById("stats-view");
  view.replaceChildren();
  const pct = (v) => (100 * v).toFixed(1) + "%";
  const numbers = el("table", { class: "numbers", id: "stats-numbers" },
    ...[
      ["accepted samples", stats.accepted],
      ["rejected records", stats.rejected],
      ["QA pairs", stats.qas],
      ["samples with reflection", `${stats.reflection_samples} (${pct(stats.reflection_rate)})`],
      ["mean quality", stats.quality_mean === null ? "n/a" : stats.quality_mean.toFixed(3)],
      ["non-commercial sources", stats.non_commercial_sources.join(", ") || "none"],
    ].map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v }))));
  const reflection = [["with reflection", stats.reflection_samples], ["without", stats.accepted - stats.reflection_samples],
    ...Object.entries(stats.reflections_by_kind).map(([k, v]) => [`kind: ${k}`, v])];
  const quality = stats.quality_bins.map((v, i) => [`${(i / 10).toFixed(1)}–${((i + 1) / 10).toFixed(1)}`, v]);
  view.append(
    el("h2", { text: "Statistics" }),
    numbers,
    el("div", { class: "charts" },
      barChart("chart-operators", "Operator calls", Object.entries(stats.operator_calls)),
      barChart("chart-steps", "Reasoning steps per QA", Object.entries(stats.steps_histogram)),
      barChart("chart-reflection", `Reflection (rate ${pct(stats.reflection_rate)})`, reflection),
      barChart("chart-rejects", "Rejects by reason", Object.entries(stats.rejects_by_reason)),
      barChart("chart-quality", "Quality score distribution", quality),
      barChart("chart-sources", "Accepted samples per source", Object.entries(stats.by_source))),
  );
}

// ------------------------------------------------------------------------------------------------

document.getElementById("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  goList(0);
});
document.getElementById("reset").addEventListener("click", () => {
  for (const name of FILTERS) document.getElementById("f-" + name).value = "";
  goList(0);
});
window.addEventListener("hashchange", route);
route();
