// Bar charts drawn by uPlot (the `uplot` package's browser build, served by this server from the installed
// package and loaded by index.html before this module as the global `uPlot`: nothing comes from another host).
// uPlot draws on a canvas and sets its few inline styles through element.style (CSSOM), which the page's CSP
// (`style-src 'self'`) allows; no innerHTML, no <style> element.
//
// Each chart is a <figure class="chart"> holding the uPlot chart (its legend shows the values under the cursor)
// and a table of the same numbers (for screen readers, and for anyone who wants them): the figure carries
// `data-points` (how many x values) and, as the property `uplot`, the uPlot instance itself.
const uPlot = globalThis.uPlot;

const HEIGHT = 220;
const AXIS = "#667085";
const GRID = "#e5e7eb";
/** Increments of a count axis: whole numbers only. */
const COUNT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000];

/** The charts on the page, resized with the window and destroyed when their view is drawn again. */
const live = new Set();

function el(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") element.textContent = String(value);
    else element.setAttribute(key, String(value));
  }
  element.append(...children);
  return element;
}

/** The width of a chart: the width of the page's main column, less its padding (a chart is made detached). */
function widthFor(figure) {
  const inner = figure.isConnected ? figure.clientWidth : (document.querySelector("main")?.clientWidth ?? 760) - 40;
  return Math.max(320, Math.min(1200, inner - 16));
}

function format(value, unit) {
  if (value === null || value === undefined) return "–";
  const text = Number.isInteger(value) ? String(value) : String(Number(value.toFixed(3)));
  return unit ? `${text} ${unit}` : text;
}

/**
 * A bar chart.
 *
 * - `labels`: one text per x value (a time, a qube, a credit), shown in the legend and the table.
 * - `x`: the x values: seconds since the epoch (`time: true`, bars `step` seconds wide) or nothing (one bar
 *   per label, left to right).
 * - `series`: [{ key, label, color, values }], `values` one number (or null) per label.
 * - `stacked`: each series' bars drawn on top of the previous ones (jobs by state); otherwise side by side
 *   series with at most one value per label.
 * - `unit`: of the values; `counts`: whole numbers only on the y axis.
 */
export function barChart({
  id,
  title,
  xTitle,
  labels,
  ticks,
  x,
  time = false,
  step = 1,
  series,
  stacked,
  unit,
  counts,
}) {
  if (typeof uPlot !== "function") throw new Error("The chart library (uPlot) did not load: reload the page.");
  const figure = el("figure", { class: "chart", id, "data-points": labels.length, "aria-label": title });
  const plot = el("div", { class: "chart-plot" });
  figure.append(plot);
  const raw = series.map((s) => s.values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null)));
  if (labels.length === 0) plot.append(el("p", { class: "muted chart-empty", text: "no data yet" }));
  else {
    const xs = time ? x : labels.map((_, i) => i);
    // stacked: each series plotted at the sum of itself and those below it, drawn top of the stack first so
    // that the lower bars cover the upper ones' lower part; a zero is no bar
    let below = labels.map(() => 0);
    let plotted = raw.map((values) => {
      const tops = values.map((v, i) => (v ? (stacked ? below[i] + v : v) : null));
      if (stacked) below = below.map((b, i) => b + (values[i] ?? 0));
      return tops;
    });
    let order = series.map((_, i) => i);
    if (stacked) {
      order = order.reverse();
      plotted = order.map((i) => plotted[i]);
    }
    const half = time ? step / 2 : 0.5;
    const options = {
      width: widthFor(figure),
      height: HEIGHT,
      legend: { live: true },
      // no drag-to-zoom: a handful of bars needs none
      cursor: { drag: { x: false, y: false } },
      scales: {
        // from half a bar before the first to half a bar after the last (uPlot would give one value a day)
        x: { time, range: () => [xs[0] - half, xs[xs.length - 1] + half] },
        y: { range: (_self, _min, max) => uPlot.rangeNum(0, Math.max(max ?? 0, counts ? 1 : 0.001), 0.1, true) },
      },
      axes: [
        {
          stroke: AXIS,
          grid: { show: false },
          ticks: { stroke: GRID },
          ...(time
            ? {}
            : {
                incrs: COUNT_INCRS,
                values: (_self, splits) => splits.map((v) => (Number.isInteger(v) ? (ticks?.[v] ?? "") : "")),
              }),
        },
        {
          stroke: AXIS,
          grid: { stroke: GRID },
          ticks: { stroke: GRID },
          size: 56,
          ...(counts ? { incrs: COUNT_INCRS } : {}),
        },
      ],
      series: [
        {
          label: xTitle,
          value: (_self, _v, _si, idx) => (idx === null || idx === undefined ? "hover a bar" : labels[idx]),
        },
        ...order.map((i) => {
          const s = series[i];
          const total = raw[i].reduce((sum, v) => sum + (v ?? 0), 0);
          return {
            label: s.label,
            stroke: s.color,
            fill: s.color,
            width: 0,
            points: { show: false },
            paths: uPlot.paths.bars({ size: [0.7, 48], align: 0 }),
            // at rest the series' total, under the cursor the bucket's own value (not the stacked height)
            value: (_self, _v, _si, idx) =>
              idx === null || idx === undefined ? `${format(total, unit)} in all` : format(raw[i][idx], unit),
          };
        }),
      ],
    };
    const chart = new uPlot(options, [xs, ...plotted], plot);
    figure.uplot = chart;
    live.add(figure);
  }
  figure.append(numbers(`${id}-numbers`, xTitle, labels, series, raw, unit));
  return figure;
}

/** The chart's numbers as a table, in a closed <details> (read by screen readers and tests alike). */
function numbers(id, xTitle, labels, series, raw, unit) {
  const head = el("tr", {}, el("th", { text: xTitle }), ...series.map((s) => el("th", { text: s.label })));
  const rows = labels.map((label, i) =>
    el(
      "tr",
      {},
      el("td", { text: label }),
      ...series.map((s, j) =>
        el(
          "td",
          raw[j][i] === null ? { "data-series": s.key } : { "data-series": s.key, "data-value": raw[j][i] },
          raw[j][i] === null ? "" : format(raw[j][i], unit),
        ),
      ),
    ),
  );
  return el(
    "details",
    { class: "chart-data", id },
    el("summary", { text: "the numbers" }),
    el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)),
  );
}

/** Destroys the charts inside `root` (before it is drawn again). */
export function destroyCharts(root) {
  for (const figure of live) {
    if (!root.contains(figure)) continue;
    figure.uplot.destroy();
    live.delete(figure);
  }
}

let resizing;
addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    for (const figure of live)
      if (figure.isConnected) figure.uplot.setSize({ width: widthFor(figure), height: HEIGHT });
      else {
        figure.uplot.destroy();
        live.delete(figure);
      }
  }, 100);
});
