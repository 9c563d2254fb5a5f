// The organizers' feedback results (online only): per site and per question, counts and rating charts,
// comments in their language, filtered by site, group and day; the CSV and photo zip downloads; feedback
// closed and reopened per visit. Sums over the visits shown are made here from the per-visit summary.

import * as store from "../store.js";
import { h, mount } from "../ui.js";
import { t, lang, time, day, dayKey } from "../i18n.js";
import { translated } from "../model.js";
import { barChart } from "./chart.js";
import { download, eventPath, getJson, postJson, unavailable } from "./online.js";

/** What is shown, kept across re-renders (a background sync redraws the screen). */
const filters = { site: "", group: "", day: "" };
let notice = "";

/** @param {string} arg @param {{me: any, render: () => Promise<void>}} app */
export async function responsesScreen(arg, app) {
  const title = t("nav.feedback");
  if (!app.me) return unavailable(title, t("org.offline"));
  const base = eventPath(app.me);
  const [summary, event] = await Promise.all([getJson(`${base}/feedback/summary`), getJson(base)]);
  if (summary.error || event.error) return unavailable(title, summary.error || event.error || "");
  const questions = new Map((await store.records("question")).map((r) => [r.id, r.data]));
  const zone = event.data.timezone;
  const results = h("div", { id: "responses-results" });
  const status = h("p", { class: "notice", role: "status" }, notice);
  notice = "";
  const say = (/** @type {string} */ msg) => { status.textContent = msg; };
  const redraw = () => mount(results, body(summary.data, questions, zone, base, say, app));
  redraw();
  return h(
    "section",
    { "aria-labelledby": "responses-title", class: "responses" },
    h("h2", { id: "responses-title" }, title),
    h(
      "div",
      { class: "actions downloads" },
      h("button", { type: "button", onclick: async () => { status.textContent = await download(`${base}/feedback.csv`, "feedback.csv"); } }, t("responses.download_csv")),
      h("button", { type: "button", onclick: async () => { status.textContent = await download(`${base}/export.zip`, "export.zip"); } }, t("responses.download_zip")),
    ),
    status,
    filterBar(summary.data, zone, redraw),
    results,
  );
}

/** @param {any} summary @param {string} zone @param {() => void} redraw */
function filterBar(summary, zone, redraw) {
  /** @type {any[]} */
  const visits = summary.visits;
  const sites = summary.sites.map((/** @type {any} */ s) => [s.site_id, s.name]);
  const groups = [...new Set(visits.flatMap((v) => v.group_ids))].sort().map((g) => [g, g]);
  const days = [...new Map(visits.filter((v) => v.starts_at).map((v) => [dayKey(v.starts_at, zone), day(v.starts_at, zone)]))].sort();
  /** @param {"site" | "group" | "day"} key @param {string[][]} options */
  const select = (key, options) =>
    h(
      "span",
      { class: "filter" },
      h("label", { for: `filter-${key}` }, t(`responses.filter_${key}`)),
      h(
        "select",
        { id: `filter-${key}`, onchange: (/** @type {Event} */ e) => { filters[key] = /** @type {HTMLSelectElement} */ (e.target).value; redraw(); } },
        h("option", { value: "" }, t("responses.all")),
        options.map(([value, label]) => h("option", { value, selected: value === filters[key] }, label)),
      ),
    );
  return h("div", { class: "filters" }, select("site", sites), select("group", groups), select("day", days));
}

/** The visits the filters keep. @param {any[]} visits @param {string} zone */
function shown(visits, zone) {
  return visits.filter(
    (v) =>
      (!filters.site || v.site_id === filters.site) &&
      (!filters.group || v.group_ids.includes(filters.group)) &&
      (!filters.day || (v.starts_at && dayKey(v.starts_at, zone) === filters.day)),
  );
}

/** Sums of per-visit stats: responses, expected, the overall rating and each question's answers. @param {any[]} visits */
function combine(visits) {
  const rating = { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 };
  /** @type {Map<string, any>} */
  const questions = new Map();
  const total = { responses: 0, expected: 0, rating, questions, comments: /** @type {any[]} */ ([]) };
  for (const v of visits) {
    total.responses += v.responses;
    total.expected += v.expected;
    for (const [value, n] of Object.entries(v.rating.distribution)) rating[/** @type {1} */ (Number(value))] += n;
    total.comments.push(...v.comments);
    for (const q of v.questions) {
      const sum = questions.get(q.id) || { id: q.id, kind: q.kind, text: q.text, answered: 0, rating: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 }, choices: {}, texts: [] };
      sum.answered += q.answered;
      if (q.rating) for (const [value, n] of Object.entries(q.rating.distribution)) sum.rating[value] += n;
      if (q.choices) for (const [choice, n] of Object.entries(q.choices)) sum.choices[choice] = (sum.choices[choice] || 0) + n;
      if (q.texts) sum.texts.push(...q.texts);
      questions.set(q.id, sum);
    }
  }
  return total;
}

/** Mean of a 1..5 distribution, or null. @param {Record<string, number>} distribution */
function mean(distribution) {
  const n = Object.values(distribution).reduce((a, b) => a + b, 0);
  if (!n) return null;
  return Object.entries(distribution).reduce((s, [v, c]) => s + Number(v) * c, 0) / n;
}

/** @param {string} caption @param {Record<string, number>} distribution @param {string} id */
function ratingChart(caption, distribution, id) {
  const bars = [5, 4, 3, 2, 1].map((v) => ({ key: String(v), label: t("responses.stars", { value: v }), count: distribution[v] || 0 }));
  const m = mean(distribution);
  return h(
    "div",
    null,
    barChart(caption, bars, id),
    h("p", { class: "mean" }, m === null ? t("responses.no_ratings") : t("responses.mean", { mean: m.toLocaleString(lang, { maximumFractionDigits: 1 }) })),
  );
}

/** One text with its language, so that screen readers and fonts treat it right. @param {any} text */
function quote(text) {
  return h(
    "li",
    { class: "comment", "data-feedback-id": text.feedback_id },
    h("p", { lang: text.lang || null, dir: "auto" }, text.text),
    text.author_name ? h("span", { class: "author" }, t("responses.by", { name: text.author_name }), text.lang ? ` · ${text.lang}` : "") : null,
  );
}

/** @param {any} summary @param {Map<string, any>} questions @param {string} zone @param {string} base
 * @param {(msg: string) => void} say @param {{render: () => Promise<void>}} app */
function body(summary, questions, zone, base, say, app) {
  /** @type {any[]} */
  const visits = shown(summary.visits, zone);
  if (visits.length === 0) return h("p", null, t("responses.none_match"));
  const names = new Map(summary.sites.map((/** @type {any} */ s) => [s.site_id, s.name]));
  /** @type {Map<string, {name: string, visits: any[]}>} */
  const places = new Map();
  for (const v of visits) {
    const key = v.site_id || `visit:${v.visit_id}`;
    const place = places.get(key) || { name: v.site_id ? names.get(v.site_id) || v.site_id : v.title, visits: [] };
    place.visits.push(v);
    places.set(key, place);
  }
  let n = 0;
  return [
    [...places].map(([key, place]) => {
      const sum = combine(place.visits);
      const id = `chart-${++n}`;
      return h(
        "article",
        { class: "place-results", "data-site-id": key, "aria-labelledby": `${id}-title` },
        h("h3", { id: `${id}-title` }, place.name),
        h("p", { class: "counts" }, t("responses.responses", { count: sum.responses, expected: sum.expected })),
        ratingChart(t("responses.overall"), sum.rating, `${id}-overall`),
        [...sum.questions.values()].map((q, i) => question(q, questions.get(q.id), `${id}-q${i}`)),
        sum.comments.length ? [h("h4", null, t("responses.comments")), h("ul", { class: "comments" }, sum.comments.map(quote))] : null,
      );
    }),
    h("h3", null, t("responses.visits")),
    h("ul", { class: "visit-states" }, visits.map((v) => visitState(v, zone, base, say, app))),
  ];
}

/** @param {any} q the summed answers @param {any} defined the question as pulled (texts per language) @param {string} id */
function question(q, defined, id) {
  const text = defined ? translated(defined.texts, lang).text || q.text : q.text;
  const caption = `${text} (${t("responses.answered", { count: q.answered })})`;
  if (q.kind === "rating") return h("section", { class: "question", "data-question-id": q.id }, ratingChart(caption, q.rating, id));
  if (q.kind === "choice") {
    /** @type {any[]} */
    const choices = defined ? defined.choices : [];
    const label = (/** @type {string} */ c) => {
      const found = choices.find((x) => x.id === c);
      return found ? translated(found.texts, lang).text || c : c;
    };
    const bars = Object.entries(q.choices).map(([c, count]) => ({ key: c, label: label(c), count: Number(count) }));
    return h("section", { class: "question", "data-question-id": q.id }, barChart(caption, bars, id));
  }
  return h(
    "section",
    { class: "question", "data-question-id": q.id },
    h("h4", null, caption),
    q.texts.length ? h("ul", { class: "comments" }, q.texts.map(quote)) : h("p", null, t("responses.no_texts")),
  );
}

/** A visit's feedback window, with the button that closes or reopens it.
 * @param {any} v @param {string} zone @param {string} base @param {(msg: string) => void} say @param {{render: () => Promise<void>}} app */
function visitState(v, zone, base, say, app) {
  const closed = v.feedback_closed;
  return h(
    "li",
    { class: `visit-state ${closed ? "closed" : "open"}`, "data-visit-id": v.visit_id },
    h("span", { class: "title" }, v.title),
    v.starts_at ? h("span", { class: "when" }, ` · ${day(v.starts_at, zone)} ${time(v.starts_at, zone)}`) : null,
    h("span", { class: "state" }, ` · ${t("responses.responses", { count: v.responses, expected: v.expected })} · `, closed ? t("responses.closed") : t("responses.open")),
    h(
      "button",
      {
        type: "button",
        "aria-label": t(closed ? "responses.reopen_visit" : "responses.close_visit", { visit: v.title }),
        onclick: async (/** @type {Event} */ e) => {
          const button = /** @type {HTMLButtonElement} */ (e.currentTarget);
          button.disabled = true;
          const answer = await postJson(`${base}/visits/${encodeURIComponent(v.visit_id)}/feedback/${closed ? "open" : "close"}`);
          if (answer.error) {
            button.disabled = false;
            say(answer.error);
            return;
          }
          notice = t(answer.data.feedback_closed ? "responses.now_closed" : "responses.now_open", { visit: v.title });
          await app.render();
          const again = /** @type {HTMLElement | null} */ (document.querySelector(`.visit-state[data-visit-id="${CSS.escape(v.visit_id)}"] button`));
          if (again) again.focus();
        },
      },
      closed ? t("responses.reopen") : t("responses.close"),
    ),
  );
}
