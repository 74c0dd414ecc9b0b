// simattr's HTML report: draws the attribution matrix of the record embedded in the page
// (<script type="application/json" id="simattr-data">) as an interactive heatmap. Everything
// from the data reaches the page through textContent and data attributes, never as markup.
// Opened with #selftest, the page hovers a few cells and labels after drawing, reads back what
// it shows, and writes a JSON summary into <pre id="simattr-selftest"> (tests/html.rs).
(function () {
  "use strict";

  // The heatmap's colour scale (src/output/heatmap/layout.rs), which html.rs defines before
  // this script as SIMATTR_SCALE: ColorBrewer RdBu anchors walked outward from zero, the centre
  // pure white so that exact zeros vanish into the background.
  const { red_arm: RED_ARM, blue_arm: BLUE_ARM, non_finite: NON_FINITE, white: WHITE } = SIMATTR_SCALE;
  const TOP = 10;

  const errors = [];
  window.addEventListener("error", (event) => errors.push(String(event.message)));

  /** A matrix entry as a number: JSON writes NaN as null. */
  function num(v) {
    return typeof v === "number" ? v : NaN;
  }

  /** The diverging colour of `v` on a scale symmetric in `maxAbs`. */
  function colour(v, maxAbs) {
    if (!Number.isFinite(v)) return NON_FINITE;
    if (!(maxAbs > 0)) return WHITE;
    const t = Math.min(1, Math.max(-1, v / maxAbs));
    const arm = t < 0 ? BLUE_ARM : RED_ARM;
    const pos = Math.abs(t) * (arm.length - 1);
    const i = Math.min(Math.floor(pos), arm.length - 2);
    const f = pos - i;
    return [0, 1, 2].map((c) => {
      const a = arm[i][c];
      const b = arm[i + 1][c];
      return Math.min(255, Math.max(0, Math.round(a + (b - a) * f)));
    });
  }

  function css(rgb) {
    return "rgb(" + rgb[0] + ", " + rgb[1] + ", " + rgb[2] + ")";
  }

  /** Whether white text reads better than black on `rgb`. */
  function dark(rgb) {
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 130;
  }

  function maxAbsOf(values) {
    let m = 0;
    for (const v of values) {
      if (Number.isFinite(v) && Math.abs(v) > m) m = Math.abs(v);
    }
    return m;
  }

  /** "+0.4387", "-0.0120": the sign always shown. */
  function signed(v) {
    if (!Number.isFinite(v)) return String(v);
    return (v < 0 ? "-" : "+") + Math.abs(v).toFixed(4);
  }

  /** A number for the overview: six decimals, or three significant digits when small. */
  function plain(v) {
    if (!Number.isFinite(v)) return String(v);
    if (v === 0 || Math.abs(v) >= 1e-3) return v.toFixed(6);
    return v.toExponential(3);
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function paint(e, rgb) {
    e.style.backgroundColor = css(rgb);
    e.classList.toggle("dark", dark(rgb));
  }

  const data = JSON.parse(document.getElementById("simattr-data").textContent);
  const provenance = data.provenance || {};

  // The tokens each text's prompt contributed, [start, end) (none without a prompt): part of
  // what the model read, marked apart from the user's own text in the token view.
  const promptRange = (text) => {
    const range = text && text.prompt_tokens;
    return Array.isArray(range) && range.length === 2 ? range.map(Number) : [0, 0];
  };
  const views = {
    tokens: {
      name: "tokens", unit: "token", a: data.tokens_a, b: data.tokens_b, m: data.attributions,
      prompt: { a: promptRange(data.text_a), b: promptRange(data.text_b) },
    },
  };
  if (Array.isArray(data.words_a) && Array.isArray(data.words_b) && Array.isArray(data.word_attributions)) {
    views.words = { name: "words", unit: "word", a: data.words_a, b: data.words_b, m: data.word_attributions };
  }
  for (const view of Object.values(views)) {
    view.m = view.m.map((row) => row.map(num));
    view.rowSums = view.m.map((row) => {
      let s = 0;
      for (const v of row) s += v;
      return s;
    });
    view.colSums = view.b.map((_, j) => {
      let s = 0;
      for (const row of view.m) s += row[j];
      return s;
    });
    view.maxAbs = maxAbsOf(view.m.flat());
    view.maxAbsSums = maxAbsOf(view.rowSums.concat(view.colSums));
    const pairs = [];
    view.m.forEach((row, i) => row.forEach((v, j) => {
      if (Number.isFinite(v)) pairs.push({ i, j, v });
    }));
    // Stable: equal magnitudes keep the matrix's row-major order.
    pairs.sort((x, y) => Math.abs(y.v) - Math.abs(x.v));
    view.top = pairs.slice(0, TOP);
  }

  const info = document.getElementById("info");
  const table = document.getElementById("matrix");
  const switcher = document.getElementById("view-switch");
  let view = views.tokens;
  // What the current view drew, by index.
  let cells = [];
  let rowLabels = [];
  let colLabels = [];
  let tokensA = [];
  let tokensB = [];
  let marked = [];

  function defaultInfo() {
    return "Hover a cell for its " + view.unit + " pair and value, or a " + view.unit +
      " to highlight its row or column.";
  }

  function fillOverview() {
    const scores = document.getElementById("scores");
    const settings = document.getElementById("settings");
    const refs = data.reference_terms || {};
    const add = (dl, key, label, value, numeric) => {
      dl.appendChild(el("dt", null, label));
      const dd = el("dd");
      dd.dataset.field = key;
      if (numeric) {
        dd.dataset.value = String(num(value));
        dd.textContent = plain(num(value));
      } else {
        dd.textContent = value === undefined || value === null ? "—" : String(value);
      }
      dl.appendChild(dd);
    };
    add(scores, "score", "score", data.score, true);
    add(scores, "similarity", "similarity", data.similarity, false);
    add(scores, "attribution_sum", "attribution sum", data.attribution_sum, true);
    add(scores, "ref_a__b", "e(r_a)·e(b)", refs.ref_a__b, true);
    add(scores, "a__ref_b", "e(a)·e(r_b)", refs.a__ref_b, true);
    add(scores, "ref_a__ref_b", "e(r_a)·e(r_b)", refs.ref_a__ref_b, true);
    add(scores, "attributable", "attributable", data.attributable, true);
    add(scores, "completeness_error", "completeness error", data.completeness_error, true);
    const pick = (key, fallback) => (provenance[key] !== undefined ? provenance[key] : fallback);
    add(settings, "model", "model", pick("model", data.model), false);
    add(settings, "architecture", "architecture", pick("architecture", data.architecture), false);
    add(settings, "method", "method", pick("method", data.method), false);
    add(settings, "layer", "layer", pick("layer", data.layer), false);
    add(settings, "steps", "steps", pick("steps", data.steps), false);
    add(settings, "rule", "rule", pick("rule", data.quadrature), false);
    add(settings, "mode", "mode", data.mode, false);
    add(settings, "backend", "backend", pick("backend", data.backend), false);
    if (views.words) add(settings, "word_merge", "word merge", data.word_merge, false);
    add(settings, "simattr_version", "simattr", provenance.simattr_version, false);
    const meta = [];
    if (data.id !== undefined) meta.push("id " + data.id);
    if (data.line !== undefined) meta.push("line " + data.line);
    if (data.rank !== undefined) meta.push("rank " + data.rank);
    if (provenance.truncated) meta.push("a text was truncated to max_seq_length");
    const prompted = ["a", "b"].some((axis) => views.tokens.prompt[axis][1] > views.tokens.prompt[axis][0]);
    if (prompted) meta.push("the prompt's tokens are in grey italics");
    document.getElementById("record-meta").textContent = meta.join(" · ");
    document.getElementById("text-a").textContent = data.text_a && data.text_a.text !== undefined ? data.text_a.text : "";
    document.getElementById("text-b").textContent = data.text_b && data.text_b.text !== undefined ? data.text_b.text : "";
  }

  // Whether token k of text `axis` is its prompt's, in the current view.
  function inPrompt(axis, k) {
    const range = view.prompt && view.prompt[axis];
    return Boolean(range) && k >= range[0] && k < range[1];
  }

  function drawTokens(container, labels, sums, axis) {
    container.textContent = "";
    return labels.map((label, k) => {
      const span = el("span", "tok", label);
      span.dataset.axis = axis;
      span.dataset.index = String(k);
      span.dataset.value = String(sums[k]);
      span.title = (axis === "a" ? "row sum " : "column sum ") + signed(sums[k]);
      if (inPrompt(axis, k)) {
        span.classList.add("prompt");
        span.title += " (the prompt's)";
      }
      paint(span, colour(sums[k], view.maxAbsSums));
      container.appendChild(span);
      return span;
    });
  }

  function drawMatrix() {
    table.textContent = "";
    table.dataset.view = view.name;
    const thead = el("thead");
    const header = el("tr");
    header.appendChild(el("th", "corner"));
    colLabels = view.b.map((label, j) => {
      const th = el("th", inPrompt("b", j) ? "col-label prompt" : "col-label");
      th.dataset.axis = "b";
      th.dataset.index = String(j);
      th.appendChild(el("span", null, label));
      header.appendChild(th);
      return th;
    });
    thead.appendChild(header);
    table.appendChild(thead);
    const tbody = el("tbody");
    rowLabels = [];
    cells = view.m.map((row, i) => {
      const tr = el("tr");
      const th = el("th", inPrompt("a", i) ? "row-label prompt" : "row-label", view.a[i]);
      th.dataset.axis = "a";
      th.dataset.index = String(i);
      tr.appendChild(th);
      rowLabels.push(th);
      const rowCells = row.map((v, j) => {
        const td = el("td", "cell");
        td.dataset.i = String(i);
        td.dataset.j = String(j);
        td.dataset.value = String(v);
        paint(td, colour(v, view.maxAbs));
        tr.appendChild(td);
        return td;
      });
      tbody.appendChild(tr);
      return rowCells;
    });
    table.appendChild(tbody);
    document.getElementById("legend-min").textContent = signed(-view.maxAbs);
    document.getElementById("legend-max").textContent = signed(view.maxAbs);
  }

  function drawTop() {
    const list = document.getElementById("top-pairs");
    list.textContent = "";
    for (const p of view.top) {
      const li = el("li");
      li.dataset.i = String(p.i);
      li.dataset.j = String(p.j);
      li.dataset.value = String(p.v);
      const swatch = el("span", "swatch");
      swatch.style.backgroundColor = css(colour(p.v, view.maxAbs));
      li.appendChild(swatch);
      li.appendChild(el("span", "pair", view.a[p.i] + " ↔ " + view.b[p.j]));
      li.appendChild(el("span", "value", signed(p.v)));
      list.appendChild(li);
    }
  }

  function render(name) {
    view = views[name] || views.tokens;
    marked = [];
    drawMatrix();
    tokensA = drawTokens(document.getElementById("tokens-a"), view.a, view.rowSums, "a");
    tokensB = drawTokens(document.getElementById("tokens-b"), view.b, view.colSums, "b");
    drawTop();
    info.textContent = defaultInfo();
    for (const button of switcher.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === view.name));
    }
  }

  function clear() {
    for (const e of marked) e.classList.remove("hl", "active");
    marked = [];
  }

  function mark(e, className) {
    if (!e) return;
    e.classList.add(className);
    marked.push(e);
  }

  function hoverCell(i, j) {
    clear();
    mark(cells[i] && cells[i][j], "active");
    mark(rowLabels[i], "hl");
    mark(colLabels[j], "hl");
    mark(tokensA[i], "hl");
    mark(tokensB[j], "hl");
    info.textContent = view.a[i] + " ↔ " + view.b[j] + ": " + signed(view.m[i][j]);
  }

  function hoverRow(i) {
    clear();
    mark(rowLabels[i], "hl");
    mark(tokensA[i], "hl");
    for (const td of cells[i] || []) mark(td, "hl");
    info.textContent = view.a[i] + " (text a, " + view.unit + " " + (i + 1) + "): row sum " + signed(view.rowSums[i]);
  }

  function hoverColumn(j) {
    clear();
    mark(colLabels[j], "hl");
    mark(tokensB[j], "hl");
    for (const row of cells) mark(row[j], "hl");
    info.textContent = view.b[j] + " (text b, " + view.unit + " " + (j + 1) + "): column sum " +
      signed(view.colSums[j]);
  }

  document.addEventListener("mouseover", (event) => {
    const target = event.target instanceof Element
      ? event.target.closest("td.cell, th.row-label, th.col-label, .tok, #top-pairs li")
      : null;
    if (!target) {
      if (marked.length) {
        clear();
        info.textContent = defaultInfo();
      }
      return;
    }
    if (target.matches("td.cell, #top-pairs li")) {
      hoverCell(Number(target.dataset.i), Number(target.dataset.j));
      if (target.matches("li")) mark(target, "hl");
    } else if (target.dataset.axis === "a") {
      hoverRow(Number(target.dataset.index));
    } else {
      hoverColumn(Number(target.dataset.index));
    }
  });

  switcher.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button[data-view]") : null;
    if (button && views[button.dataset.view]) render(button.dataset.view);
  });

  // --- #selftest: what the page shows, read back from the DOM. ---

  function hover(e) {
    e.dispatchEvent(new MouseEvent("mouseover", { bubbles: true, cancelable: true, view: window }));
  }

  function indices(selector, attribute) {
    return Array.from(document.querySelectorAll(selector), (e) => Number(e.dataset[attribute]));
  }

  function highlighted() {
    return {
      info: info.textContent,
      cells: Array.from(document.querySelectorAll("#matrix td.cell.hl"), (td) => [Number(td.dataset.i), Number(td.dataset.j)]),
      active: Array.from(document.querySelectorAll("#matrix td.cell.active"), (td) => [Number(td.dataset.i), Number(td.dataset.j)]),
      row_labels: indices("#matrix th.row-label.hl", "index"),
      col_labels: indices("#matrix th.col-label.hl", "index"),
      tokens_a: indices("#tokens-a .tok.hl", "index"),
      tokens_b: indices("#tokens-b .tok.hl", "index"),
    };
  }

  function probe() {
    const rows = Array.from(table.querySelectorAll("tbody tr"));
    const tokens = (id) => Array.from(document.querySelectorAll("#" + id + " .tok"), (s) => ({
      text: s.textContent,
      value: s.dataset.value,
      colour: getComputedStyle(s).backgroundColor,
    }));
    const out = {
      view: table.dataset.view,
      pressed: Array.from(switcher.querySelectorAll("button[aria-pressed=true]"), (b) => b.dataset.view),
      row_labels: rows.map((tr) => tr.querySelector("th.row-label").textContent),
      col_labels: Array.from(table.querySelectorAll("thead th.col-label"), (th) => th.textContent),
      values: rows.map((tr) => Array.from(tr.querySelectorAll("td.cell"), (td) => td.dataset.value)),
      colours: rows.map((tr) => Array.from(tr.querySelectorAll("td.cell"), (td) => getComputedStyle(td).backgroundColor)),
      positions_ok: rows.every((tr, i) =>
        Array.from(tr.querySelectorAll("td.cell")).every((td, j) => td.dataset.i === String(i) && td.dataset.j === String(j))),
      tokens_a: tokens("tokens-a"),
      tokens_b: tokens("tokens-b"),
      prompt_tokens_a: indices("#tokens-a .tok.prompt", "index"),
      prompt_tokens_b: indices("#tokens-b .tok.prompt", "index"),
      prompt_labels_a: indices("#matrix th.row-label.prompt", "index"),
      prompt_labels_b: indices("#matrix th.col-label.prompt", "index"),
      top_pairs: Array.from(document.querySelectorAll("#top-pairs li"), (li) => ({
        i: Number(li.dataset.i),
        j: Number(li.dataset.j),
        value: li.dataset.value,
        pair: li.querySelector(".pair").textContent,
        shown: li.querySelector(".value").textContent,
      })),
      hovers: [],
    };
    const r = rows.length;
    const c = r ? cells[0].length : 0;
    const targets = [];
    const seen = new Set();
    const addCell = (i, j) => {
      if (i >= 0 && j >= 0 && i < r && j < c && !seen.has(i + "," + j)) {
        seen.add(i + "," + j);
        targets.push(["cell", i, cells[i][j]]);
      }
    };
    addCell(0, 0);
    addCell(r - 1, c - 1);
    addCell(Math.floor(r / 2), Math.floor(c / 2));
    if (view.top.length) addCell(view.top[0].i, view.top[0].j);
    for (const i of new Set([0, r - 1])) if (rowLabels[i]) targets.push(["row-label", i, rowLabels[i]]);
    for (const j of new Set([0, c - 1])) if (colLabels[j]) targets.push(["col-label", j, colLabels[j]]);
    const middleA = Math.floor(tokensA.length / 2);
    const middleB = Math.floor(tokensB.length / 2);
    if (tokensA[middleA]) targets.push(["token-a", middleA, tokensA[middleA]]);
    if (tokensB[middleB]) targets.push(["token-b", middleB, tokensB[middleB]]);
    const firstTop = document.querySelector("#top-pairs li");
    if (firstTop) targets.push(["top-pair", 0, firstTop]);
    for (const [kind, index, element] of targets) {
      hover(element);
      const state = highlighted();
      state.kind = kind;
      if (kind === "cell") {
        state.i = Number(element.dataset.i);
        state.j = Number(element.dataset.j);
      } else {
        state.index = index;
      }
      out.hovers.push(state);
    }
    hover(document.body);
    const after = highlighted();
    after.kind = "none";
    out.hovers.push(after);
    return out;
  }

  function selftest() {
    const report = {
      errors,
      switch_visible: !switcher.hidden,
      views_available: Object.keys(views),
      fields: {},
      meta: document.getElementById("record-meta").textContent,
      text_a: document.getElementById("text-a").textContent,
      text_b: document.getElementById("text-b").textContent,
      views: {},
    };
    for (const dd of document.querySelectorAll("#overview dd")) {
      report.fields[dd.dataset.field] = dd.dataset.value !== undefined ? dd.dataset.value : dd.textContent;
    }
    for (const name of Object.keys(views)) {
      if (view.name !== name) {
        // Through the switch, as a reader would.
        const button = switcher.querySelector('button[data-view="' + name + '"]');
        if (button) button.click();
      }
      report.views[name] = probe();
    }
    const back = switcher.querySelector('button[data-view="tokens"]');
    if (view.name !== "tokens" && back) back.click();
    report.final_view = view.name;
    document.getElementById("simattr-selftest").textContent = JSON.stringify(report);
  }

  try {
    fillOverview();
    switcher.hidden = !views.words;
    render("tokens");
  } catch (e) {
    errors.push(String(e && e.stack ? e.stack : e));
    info.textContent = "The report could not be drawn: " + e;
  }
  if (location.hash === "#selftest") {
    try {
      selftest();
    } catch (e) {
      errors.push(String(e && e.stack ? e.stack : e));
      document.getElementById("simattr-selftest").textContent = JSON.stringify({ errors });
    }
  }
})();
