// Feedback: the event's questions for each visit I attended, answered offline through the outbox,
// editable until the organizers close feedback on that visit (then shown read-only).

import { h } from "../ui.js";
import { t, lang, time, day, dirOf } from "../i18n.js";
import { attendedVisits, feedbackByVisit, questions, saveFeedback, translated } from "../model.js";
import * as store from "../store.js";
import { reasonOf } from "./fix.js";

const RATINGS = [1, 2, 3, 4, 5];

/** @param {string} arg "" (the visits) or a visit id (its form)
 * @param {import("../routes.js").App} app */
export async function feedbackScreen(arg, app) {
  const visits = await attendedVisits(app.me);
  const mine = await feedbackByVisit();
  if (arg) {
    // Only visits I attended take feedback (the server refuses the others anyway).
    const visit = visits.find((v) => v.id === arg);
    if (!visit) return h("section", null, h("h2", null, t("feedback.unknown_visit")), h("p", null, h("a", { href: "#/feedback" }, t("nav.feedback"))));
    // What the server refused of my answers on this visit, said here too (the problems list has Fix).
    const refused = (await store.problems()).filter((p) => p.status === "rejected" && p.mutation?.type === "feedback.put" && p.mutation.args.visit_id === visit.id);
    const header = refused.length
      ? h("ul", { class: "refused" }, refused.map((p) => h("li", null, t("feedback.refused", { reason: reasonOf(p) }))))
      : undefined;
    return feedbackForm(visit, await questions(), mine.get(visit.id), app, { header });
  }
  const zone = await eventZone();
  return h(
    "section",
    { "aria-labelledby": "feedback-title" },
    h("h2", { id: "feedback-title" }, t("nav.feedback")),
    visits.length === 0 ? h("p", null, t("feedback.none_yet")) : h("p", null, t("feedback.intro")),
    h(
      "ul",
      { class: "feedback-visits" },
      visits.map((v) => {
        const given = mine.get(v.id);
        const state = v.feedback_closed ? t("feedback.state_closed") : given ? (given.pending ? t("feedback.state_waiting") : t("feedback.state_given")) : t("feedback.state_open");
        return h(
          "li",
          { class: "feedback-visit", "data-visit-id": v.id },
          h("a", { href: `#/feedback/${encodeURIComponent(v.id)}` }, v.title),
          h("div", { class: "meta" }, `${day(v.starts_at, zone)} ${time(v.starts_at, zone)}`, " · ", h("span", { class: "state" }, state)),
        );
      }),
    ),
  );
}

async function eventZone() {
  const event = (await store.records("event"))[0];
  return event ? event.data.timezone : "Europe/Rome";
}

/** One control per question, labelled; a rating or choice is a group of radio buttons.
 * @param {any} q @param {any} value @param {string} prefix */
function questionControl(q, value, prefix) {
  const text = translated(q.texts, lang);
  const id = `${prefix}-${q.id}`;
  const legend = h("legend", { lang: text.lang, dir: dirOf(text.lang) }, text.text || q.id);
  if (q.kind === "text") {
    return h("div", { class: "question", "data-question-id": q.id },
      h("label", { for: id, lang: text.lang, dir: dirOf(text.lang) }, text.text || q.id),
      h("textarea", { id, name: q.id, dir: "auto", maxlength: 5000, value: typeof value === "string" ? value : "" }));
  }
  const options = q.kind === "rating"
    ? RATINGS.map((n) => ({ value: String(n), label: String(n), lang: null }))
    : (q.choices || []).map((/** @type {any} */ c) => {
        const label = translated(c.texts, lang);
        return { value: c.id, label: label.text || c.id, lang: label.lang };
      });
  return h("fieldset", { class: `question ${q.kind}`, "data-question-id": q.id },
    legend,
    h("div", { class: "options" },
      options.map((o) => h("label", { class: "check" },
        h("input", { type: "radio", name: q.id, value: o.value, checked: value !== undefined && value !== null && String(value) === o.value }),
        h("span", { lang: o.lang }, o.label))),
      h("label", { class: "check none" },
        h("input", { type: "radio", name: q.id, value: "", checked: value === undefined || value === null }),
        h("span", null, t("feedback.no_answer")))));
}

/** The answers in a form, as feedback.put takes them: a rating a number, a choice its id, text a
 * string; nothing chosen or typed is null. @param {HTMLFormElement} form @param {any[]} qs */
export function answersOf(form, qs) {
  const data = new FormData(form);
  /** @type {Record<string, any>} */
  const answers = {};
  for (const q of qs) {
    const raw = data.get(q.id);
    const text = typeof raw === "string" ? raw : "";
    if (q.kind === "text") answers[q.id] = text.trim() ? text : null;
    else if (q.kind === "rating") answers[q.id] = text ? Number(text) : null;
    else answers[q.id] = text || null;
  }
  return answers;
}

/** The form of one visit (also the editor that fixes a refused or conflicting feedback).
 * @param {any} visit @param {any[]} qs @param {import("../model.js").FeedbackView | undefined} given
 * @param {import("../routes.js").App} app @param {{problem?: import("../store.js").Problem, header?: Node}} [fix] */
export function feedbackForm(visit, qs, given, app, fix = {}) {
  const closed = Boolean(visit.feedback_closed);
  const prefix = `fb-${visit.id}`;
  const comment = h("textarea", { id: `${prefix}-comment`, name: "comment", dir: "auto", maxlength: 10000, value: given ? given.comment : "" });
  const fields = h("fieldset", { class: "answers", disabled: closed },
    h("legend", { class: "visually-hidden" }, t("feedback.answers")),
    qs.map((q) => questionControl(q, given ? given.answers[q.id] : undefined, prefix)),
    h("div", { class: "question" }, h("label", { for: `${prefix}-comment` }, t("feedback.comment")), comment));
  return h(
    "form",
    // Held against background re-renders only once something is typed: an untouched form still
    // turns read-only when a sync brings the news that feedback closed.
    { class: "feedback-form", "data-editing": fix.problem && !closed ? "" : null, "data-visit-id": visit.id, "aria-labelledby": "feedback-form-title",
      oninput: (/** @type {Event} */ e) => { if (!closed) /** @type {HTMLElement} */ (e.currentTarget).setAttribute("data-editing", ""); },
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        const form = /** @type {HTMLFormElement} */ (e.target);
        const queued = await saveFeedback(visit.id, answersOf(form, qs), /** @type {HTMLTextAreaElement} */ (comment).value, fix.problem);
        form.removeAttribute("data-editing");
        location.hash = "#/feedback";
        if (queued) app.changed();
        else void app.render();
      } },
    h("h2", { id: "feedback-form-title" }, t("feedback.title_for", { visit: visit.title })),
    fix.header || null,
    closed ? h("p", { class: "closed-note", role: "note" }, t("feedback.closed")) : null,
    given && given.pending ? h("p", { class: "pending" }, t("feedback.waiting")) : null,
    qs.length === 0 ? h("p", null, t("feedback.no_questions")) : null,
    fields,
    h("div", { class: "actions" },
      closed ? null : h("button", { type: "submit", class: "primary" }, t("action.save")),
      h("a", { href: "#/feedback" }, closed ? t("feedback.back") : t("action.cancel"))),
  );
}
