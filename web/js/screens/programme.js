// The organizers' Programme: every group's day as a timeline (groups as columns, the event's times), and
// a visit's move, new times, cancellation or new site and groups drafted first, checked by the server
// (POST …/itinerary/check: the itinerary check on the programme as the draft would leave it) as it is
// made, then published (PATCH …/visits/{id} with If-Match). Online only: it edits the server's programme.

import { h, mount } from "../ui.js";
import { t, day, dayKey } from "../i18n.js";
import { call, problemOf } from "../sync.js";
import { eventPath, getJson, postJson, unavailable } from "./online.js";
import { sortedBy } from "../model.js";
import { wall, stampIn, minutesOf, clockOf } from "../zone.js";

const PX_PER_MINUTE = 1.2;
const STEP = 15; // minutes moved by "Earlier" and "Later"

/** What the screen keeps between renders: the day shown, the draft, the last outcome. */
const state = {
  day: "",
  /** @type {null | {base: any, etag: string, values: Values, meanwhile: string[]}} */
  draft: null,
  /** @type {any} */
  check: null,
  checkError: "",
  message: "",
  error: "",
};

/** @typedef {{date: string, start: string, endDate: string, end: string, site: string, groups: string[], cancelled: boolean}} Values */

/** @param {string} arg the day shown ("YYYY-MM-DD"), or "" @param {import("../routes.js").App} app */
export async function programmeScreen(arg, app) {
  const base = eventPath(app.me);
  const [it, check] = await Promise.all([getJson(`${base}/itinerary`), getJson(`${base}/itinerary/check`)]);
  if (!it.data) return unavailable(t("nav.programme"), it.error || "");
  const itinerary = it.data;
  const problems = check.data ? check.data.problems : [];
  const zone = itinerary.timezone;
  /** @type {any[]} */
  const visits = itinerary.items.map((/** @type {any} */ i) => i.visit);
  const siteNames = new Map(itinerary.items.filter((/** @type {any} */ i) => i.visit.site_id).map((/** @type {any} */ i) => [i.visit.site_id, i.site_name]));
  const sites = await sortedBy("site", "name");
  for (const s of sites) siteNames.set(s.id, s.name);
  const groups = await sortedBy("group", "id");
  if (groups.length === 0) for (const id of [...new Set(visits.flatMap((v) => v.group_ids))].sort()) groups.push({ id, name: id });
  const days = [...new Set(visits.map((v) => dayKey(v.starts_at, zone)))].sort();
  state.day = days.includes(arg) ? arg : days.includes(state.day) ? state.day : days[0] || "";
  if (state.draft && !visits.some((v) => v.id === state.draft?.base.id)) state.draft = null;

  const timeline = h("div", { class: "timeline-wrap" });
  const panel = h("div", { class: "draft-panel" });
  const outcome = h("div", { class: "outcome", "aria-live": "polite" });
  const root = h(
    "section",
    { "aria-labelledby": "programme-title", class: "programme" },
    h("h2", { id: "programme-title" }, t("nav.programme")),
    h("p", { class: "zone-note" }, t("org.zone", { zone })),
    h("nav", { "aria-label": t("programme.days"), class: "days" },
      days.map((d) => h("a", { href: `#/programme/${d}`, "aria-current": d === state.day ? "page" : null }, day(`${d}T12:00:00Z`, zone)))),
    outcome,
    panel,
    timeline,
    h("section", { "aria-labelledby": "problems-now" },
      h("h3", { id: "problems-now" }, t("programme.problems_now")),
      problems.length ? h("ul", { class: "checks" }, problems.map(problemItem)) : h("p", null, t("programme.no_problems"))),
  );

  /** The visit as the draft would make it (for the timeline). @param {any} v */
  const shown = (v) => {
    const d = state.draft;
    if (!d || d.base.id !== v.id) return v;
    const x = d.values;
    return { ...v, starts_at: stampIn(x.date, x.start, zone), ends_at: stampIn(x.endDate, x.end, zone), group_ids: x.groups, site_id: x.site || null, status: x.cancelled ? "cancelled" : v.status, draft: true };
  };

  const paintTimeline = () => {
    const today = visits.map(shown).filter((v) => dayKey(v.starts_at, zone) === state.day);
    const flagged = new Set((state.check ? state.check.problems : problems).flatMap((/** @type {any} */ p) => p.visit_ids));
    const from = Math.floor(Math.min(...today.map((v) => minutesOf(wall(v.starts_at, zone).time)), 8 * 60) / 60) * 60;
    const to = Math.ceil(Math.max(...today.map((v) => minutesOf(wall(v.ends_at, zone).time)), 18 * 60) / 60) * 60;
    const height = (to - from) * PX_PER_MINUTE;
    const hours = h("div", { class: "hours", "aria-hidden": "true" });
    hours.style.blockSize = `${height}px`;
    for (let m = from; m <= to; m += 60) {
      const mark = h("span", null, clockOf(m));
      mark.style.insetBlockStart = `${(m - from) * PX_PER_MINUTE}px`;
      hours.append(mark);
    }
    const columns = groups.map((g) =>
      h("section", { class: "column", "aria-labelledby": `col-${g.id}` },
        h("h3", { id: `col-${g.id}`, title: g.name }, g.id),
        (() => {
          const list = h("ol", { class: "slots" });
          list.style.blockSize = `${height}px`;
          for (const v of today.filter((x) => x.group_ids.includes(g.id))) {
            const starts = wall(v.starts_at, zone).time, ends = wall(v.ends_at, zone).time;
            const top = (minutesOf(starts) - from) * PX_PER_MINUTE;
            const button = h("button", {
              type: "button", class: `slot${v.draft ? " draft" : ""}${v.status === "cancelled" ? " cancelled" : ""}${flagged.has(v.id) ? " flagged" : ""}`,
              "data-visit-id": v.id, "aria-pressed": v.draft ? "true" : "false",
              "aria-label": t("programme.slot", { time: `${starts}–${ends}`, title: v.title, group: g.id }) + (v.status === "cancelled" ? ` (${t("visit.cancelled")})` : "") + (flagged.has(v.id) ? ` ⚠ ${t("programme.has_problem")}` : ""),
              onclick: () => void openDraft(v.id),
            }, h("span", { class: "time" }, `${starts}–${ends}`), " ", v.title);
            const item = h("li", null, button);
            item.style.insetBlockStart = `${top}px`;
            item.style.blockSize = `${Math.max(24, (minutesOf(ends) - minutesOf(starts)) * PX_PER_MINUTE)}px`;
            list.append(item);
          }
          return list;
        })()));
    mount(timeline, h("div", { class: "timeline", role: "group", "aria-label": t("programme.timeline", { day: day(`${state.day}T12:00:00Z`, zone) }) }, hours, columns));
  };

  const paintOutcome = () => {
    mount(outcome, state.message ? h("p", { class: "ok" }, state.message) : null, state.error ? h("p", { class: "bad" }, state.error) : null);
  };

  /** @param {string} visitId */
  const openDraft = async (visitId) => {
    state.message = state.error = "";
    const got = await getJson(`${base}/visits/${encodeURIComponent(visitId)}`);
    if (!got.data) {
      state.error = got.error || "";
      paintOutcome();
      return;
    }
    state.draft = { base: got.data, etag: got.etag || "", values: valuesOf(got.data, zone), meanwhile: [] };
    state.check = null;
    state.checkError = "";
    // Redrawn by a sync meanwhile: the screen shown draws it.
    if (root.isConnected) {
      paintForm();
      paintTimeline();
      paintOutcome();
      void runCheck();
    } else await app.render();
    /** @type {HTMLElement | null} */ (document.querySelector(".draft select"))?.focus();
  };

  const closeDraft = () => {
    state.draft = null;
    state.check = null;
    mount(panel);
    paintTimeline();
  };

  const runCheck = async () => {
    const d = state.draft;
    if (!d) return;
    const { values, base: from } = d;
    const body = { visit_id: from.id, fields: fieldsOf(values, from, zone) };
    const got = await postJson(`${base}/itinerary/check`, body);
    // For the draft as it is now, whichever build asked (a sync's redraw checks too).
    if (state.draft !== d || d.values !== values || d.base !== from) return;
    state.check = got.data || null;
    state.checkError = got.error || "";
    paintCheck();
    paintTimeline();
  };

  const paintCheck = () => {
    const region = panel.querySelector(".draft-check");
    if (!region || !state.draft) return;
    const id = state.draft.base.id;
    const c = state.check;
    const relevant = c ? c.problems.filter((/** @type {any} */ p) => p.new || p.visit_ids.includes(id)) : [];
    mount(region,
      h("h4", { id: "draft-check-title" }, t("programme.check_title")),
      state.checkError ? h("p", { class: "bad" }, state.checkError) : null,
      !c && !state.checkError ? h("p", null, t("programme.checking")) : null,
      c && relevant.length === 0 ? h("p", { class: "ok" }, t("programme.check_clear")) : null,
      relevant.length ? h("ul", { class: "checks" }, relevant.map(problemItem)) : null,
      c && c.resolved.length ? [h("p", null, t("programme.resolved")), h("ul", { class: "checks resolved" }, c.resolved.map(problemItem))] : null,
    );
  };

  const paintForm = () => {
    const d = state.draft;
    if (!d) return;
    const x = d.values;
    const changed = () => {
      state.message = state.error = "";
      d.values = readForm(form, groups);
      state.check = null;
      paintCheck();
      paintTimeline();
      clearTimeout(debounce);
      debounce = window.setTimeout(() => void runCheck(), 250);
    };
    let debounce = 0;
    const shift = (/** @type {number} */ minutes) => {
      const start = minutesOf(/** @type {HTMLInputElement} */ (form.querySelector("#draft-start")).value) + minutes;
      const end = minutesOf(/** @type {HTMLInputElement} */ (form.querySelector("#draft-end")).value) + minutes;
      if (start < 0 || end >= 24 * 60) return;
      /** @type {HTMLInputElement} */ (form.querySelector("#draft-start")).value = clockOf(start);
      /** @type {HTMLInputElement} */ (form.querySelector("#draft-end")).value = clockOf(end);
      changed();
    };
    const form = h("form", { "data-editing": "", class: "draft", "aria-labelledby": "draft-title", oninput: changed, onsubmit: (/** @type {Event} */ e) => { e.preventDefault(); void publish(); } },
      h("h3", { id: "draft-title" }, t("programme.draft_title", { title: d.base.title })),
      d.meanwhile.length ? h("div", { class: "meanwhile" }, h("p", null, t("programme.meanwhile")), h("ul", null, d.meanwhile.map((m) => h("li", null, m)))) : null,
      h("label", { for: "draft-date" }, t("programme.day")),
      h("select", { id: "draft-date" }, days.map((dd) => h("option", { value: dd, selected: dd === x.date }, day(`${dd}T12:00:00Z`, zone)))),
      h("div", { class: "times" },
        h("span", null, h("label", { for: "draft-start" }, t("programme.starts")), h("input", { id: "draft-start", type: "time", step: 300, required: true, value: x.start })),
        h("span", null, h("label", { for: "draft-end" }, t("programme.ends")), h("input", { id: "draft-end", type: "time", step: 300, required: true, value: x.end }))),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => shift(-STEP) }, t("programme.earlier", { minutes: STEP })),
        h("button", { type: "button", onclick: () => shift(STEP) }, t("programme.later", { minutes: STEP }))),
      h("label", { for: "draft-site" }, t("programme.site")),
      h("select", { id: "draft-site" },
        h("option", { value: "", selected: !x.site }, t("programme.no_site")),
        sites.map((s) => h("option", { value: s.id, selected: s.id === x.site }, s.name))),
      h("fieldset", null, h("legend", null, t("programme.groups")),
        groups.map((g) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "group", value: g.id, checked: x.groups.includes(g.id) }), `${g.id} · ${g.name}`))),
      h("label", { class: "check" }, h("input", { type: "checkbox", id: "draft-cancelled", checked: x.cancelled }), t("programme.cancelled")),
      h("section", { class: "draft-check", "aria-live": "polite", "aria-labelledby": "draft-check-title" }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("programme.publish")),
        h("button", { type: "button", onclick: closeDraft }, t("programme.discard"))),
    );
    mount(panel, form);
    paintCheck();
  };

  const publish = async () => {
    const d = state.draft;
    if (!d) return;
    const fields = fieldsOf(d.values, d.base, zone);
    if (Object.keys(fields).length === 0) {
      state.error = t("programme.nothing");
      paintOutcome();
      return;
    }
    let response;
    try {
      response = await call(`${base}/visits/${encodeURIComponent(d.base.id)}`, {
        method: "PATCH", headers: { "Content-Type": "application/merge-patch+json", "If-Match": d.etag }, body: JSON.stringify(fields),
      });
    } catch {
      state.error = t("org.unreachable");
      paintOutcome();
      return;
    }
    if (response.status === 412) {
      // Someone published meanwhile: show what they changed, keep this draft on top of their version.
      const fresh = await getJson(`${base}/visits/${encodeURIComponent(d.base.id)}`);
      if (fresh.data) {
        d.meanwhile = describeChanges(d.base, fresh.data, zone, siteNames);
        d.base = fresh.data;
        d.etag = fresh.etag || "";
      }
      state.error = t("programme.stale");
      paintForm();
      paintOutcome();
      void runCheck();
      return;
    }
    if (!response.ok) {
      state.error = await problemOf(response);
      paintOutcome();
      return;
    }
    state.message = t("programme.published", { title: d.base.title });
    state.draft = null;
    state.check = null;
    // The draft is done: the screen is drawn again from the server's programme.
    panel.querySelector("[data-editing]")?.removeAttribute("data-editing");
    void app.requestSync();
    await app.render();
  };

  paintTimeline();
  paintOutcome();
  if (state.draft) {
    paintForm();
    void runCheck();
  }
  return root;
}

/** @param {any} p */
function problemItem(p) {
  const label = p.severity === "error" ? t("programme.error") : t("programme.warning");
  // The check's messages are the server's, in English.
  return h("li", { class: `check-item ${p.severity}` }, h("strong", null, label, p.new ? ` (${t("programme.new")})` : "", ": "), h("span", { lang: "en", dir: "ltr" }, p.message));
}

/** @param {any} visit @param {string} zone @returns {Values} */
function valuesOf(visit, zone) {
  const s = wall(visit.starts_at, zone), e = wall(visit.ends_at, zone);
  return { date: s.date, start: s.time, endDate: e.date, end: e.time, site: visit.site_id || "", groups: [...visit.group_ids], cancelled: visit.status === "cancelled" };
}

/** @param {HTMLFormElement | HTMLElement} form @param {any[]} groups @returns {Values} */
function readForm(form, groups) {
  const value = (/** @type {string} */ id) => /** @type {HTMLInputElement} */ (form.querySelector(`#${id}`)).value;
  const date = value("draft-date");
  const checked = [...form.querySelectorAll("input[name=group]:checked")].map((i) => /** @type {HTMLInputElement} */ (i).value);
  return {
    date, start: value("draft-start"), endDate: date, end: value("draft-end"), site: value("draft-site"),
    groups: groups.map((g) => g.id).filter((id) => checked.includes(id)),
    cancelled: /** @type {HTMLInputElement} */ (form.querySelector("#draft-cancelled")).checked,
  };
}

/** The merge patch from a visit to the draft's values: only what differs. @param {Values} x @param {any} base @param {string} zone */
function fieldsOf(x, base, zone) {
  /** @type {Record<string, any>} */
  const fields = {};
  const starts = x.start ? stampIn(x.date, x.start, zone) : "";
  const ends = x.end ? stampIn(x.endDate, x.end, zone) : "";
  if (starts && Date.parse(starts) !== Date.parse(base.starts_at)) fields.starts_at = starts;
  if (ends && Date.parse(ends) !== Date.parse(base.ends_at)) fields.ends_at = ends;
  if ((x.site || null) !== (base.site_id || null)) fields.site_id = x.site || null;
  if ([...x.groups].sort().join() !== [...base.group_ids].sort().join()) fields.group_ids = x.groups;
  if (x.cancelled !== (base.status === "cancelled")) fields.status = x.cancelled ? "cancelled" : "scheduled";
  return fields;
}

/** What changed between two versions of a visit, for the organizer. @param {any} before @param {any} after @param {string} zone @param {Map<string, string>} sites */
function describeChanges(before, after, zone, sites) {
  const when = (/** @type {string} */ iso) => `${day(iso, zone)} ${wall(iso, zone).time}`;
  /** @type {string[]} */
  const lines = [];
  for (const name of Object.keys(after)) {
    if (["version", "updated_at", "number", "conflicts"].includes(name)) continue;
    const [a, b] = [before[name], after[name]];
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    if (name === "starts_at" || name === "ends_at") lines.push(t(`programme.field_${name}`, { old: when(a), new: when(b) }));
    else if (name === "site_id") lines.push(t("programme.field_site_id", { old: sites.get(a) || a || "—", new: sites.get(b) || b || "—" }));
    else if (name === "group_ids") lines.push(t("programme.field_group_ids", { old: a.join(", ") || "—", new: b.join(", ") || "—" }));
    else if (name === "status") lines.push(t("programme.field_status", { old: a, new: b }));
    else lines.push(t("programme.field_other", { field: name }));
  }
  return lines;
}
