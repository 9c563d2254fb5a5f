// Bar charts drawn in the page as SVG (no chart library), each with its numbers as a table beside it:
// the table is the chart's text alternative for screen readers, and what a reader copies from.

import { h } from "../ui.js";
import { t } from "../i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 22; // height of one bar's row, in SVG units
const LABEL = 96; // room for the labels at the start of each row
const WIDTH = 320;

/** @param {string} tag @param {Record<string, string | number>} attrs @param {...(Node | string)} children */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  el.append(...children);
  return el;
}

/** A horizontal bar chart of counts, with a caption and a table of the same numbers.
 * Bars start at the inline start: in Arabic (dir=rtl) the whole chart is mirrored, labels included.
 * @param {string} caption @param {{label: string, count: number, key: string}[]} bars @param {string} id unique in the page */
export function barChart(caption, bars, id) {
  const rtl = document.documentElement.dir === "rtl";
  const max = Math.max(1, ...bars.map((b) => b.count));
  const room = WIDTH - LABEL - 40;
  const height = bars.length * ROW + 4;
  const rows = bars.map((bar, i) => {
    const y = i * ROW + 2;
    const length = Math.round((bar.count / max) * room);
    const start = rtl ? WIDTH - LABEL - length : LABEL;
    return svg(
      "g",
      { "data-key": bar.key, "data-count": bar.count },
      svg("text", { x: rtl ? WIDTH - 4 : 4, y: y + 15, "text-anchor": "start", class: "chart-label" }, bar.label),
      svg("rect", { x: start, y: y + 3, width: Math.max(length, bar.count ? 2 : 0), height: ROW - 8, rx: 2, class: "chart-bar" }),
      svg("text", { x: rtl ? start - 4 : start + length + 4, y: y + 15, "text-anchor": "start", class: "chart-count" }, String(bar.count)),
    );
  });
  // The picture is decorative for assistive technology: the table right after it says the same.
  const picture = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, class: "chart", "aria-hidden": "true", focusable: "false" }, ...rows);
  if (rtl) picture.setAttribute("direction", "rtl");
  return h(
    "figure",
    { class: "chart-figure", "data-chart": id },
    h("figcaption", { id: `${id}-caption` }, caption),
    picture,
    h(
      "table",
      { class: "chart-table", "aria-labelledby": `${id}-caption` },
      h("thead", null, h("tr", null, h("th", { scope: "col" }, t("responses.answer")), h("th", { scope: "col" }, t("responses.count")))),
      h("tbody", null, bars.map((bar) => h("tr", { "data-key": bar.key }, h("th", { scope: "row" }, bar.label), h("td", null, String(bar.count))))),
    ),
  );
}
