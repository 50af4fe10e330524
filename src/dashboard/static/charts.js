// Small SVG charts drawn with DOM calls only (no innerHTML, no inline style: the page's CSP forbids both).
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 720;
const HEIGHT = 200;
const PAD = { left: 36, right: 8, top: 10, bottom: 26 };

function node(name, attrs = {}, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function frame(points) {
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "data-points": points });
  return svg;
}

function axis(svg, max) {
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - fraction);
    svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, stroke: "#e5e7eb" }));
    svg.append(
      node(
        "text",
        { x: PAD.left - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#667085" },
        formatCount(max * fraction),
      ),
    );
  }
}

function formatCount(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/**
 * Stacked bars, one per bucket. `series`: [{ key, label, color }]; each bucket has a number per key and a
 * `label`. Each segment has a <title> (shown on hover).
 */
export function stackedBars(buckets, series) {
  const svg = frame(buckets.length);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const max = Math.max(1, ...buckets.map((b) => series.reduce((sum, s) => sum + (b[s.key] ?? 0), 0)));
  axis(svg, max);
  const step = plotW / Math.max(1, buckets.length);
  const barW = Math.max(2, step * 0.7);
  buckets.forEach((bucket, i) => {
    let y = PAD.top + plotH;
    const x = PAD.left + i * step + (step - barW) / 2;
    for (const s of series) {
      const value = bucket[s.key] ?? 0;
      if (value <= 0) continue;
      const h = (value / max) * plotH;
      y -= h;
      const rect = node("rect", {
        x,
        y,
        width: barW,
        height: h,
        fill: s.color,
        class: `bar bar-${s.key}`,
        "data-value": value,
      });
      rect.append(node("title", {}, `${bucket.label}: ${value} ${s.label}`));
      svg.append(rect);
    }
    if (buckets.length <= 12 || i % Math.ceil(buckets.length / 8) === 0)
      svg.append(
        node(
          "text",
          { x: x + barW / 2, y: HEIGHT - 8, "text-anchor": "middle", "font-size": 10, fill: "#667085" },
          bucket.short ?? "",
        ),
      );
  });
  if (buckets.length === 0)
    svg.append(node("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", fill: "#667085" }, "no data yet"));
  return svg;
}

/** Plain bars: items [{ label, short, value, color }], each with a <title>. */
export function bars(items, unit) {
  return stackedBars(
    items.map((item) => ({ label: item.label, short: item.short, [item.key ?? "value"]: item.value })),
    [...new Set(items.map((item) => item.key ?? "value"))].map((key) => ({
      key,
      label: unit,
      color: items.find((item) => (item.key ?? "value") === key)?.color ?? "#3b82f6",
    })),
  );
}
