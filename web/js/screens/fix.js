// Fixing a problem of the status line (#/fix/<mutation id>): a note or feedback the server refused, or
// that lost fields to an edit made elsewhere. The editor opens with what I had typed; saving queues a
// corrected mutation and drops the problem in the same transaction.

import { h } from "../ui.js";
import { t, lang } from "../i18n.js";
import * as store from "../store.js";
import { conflictValues, feedbackAsTyped, fixNote, notes, questions, translated } from "../model.js";
import { feedbackForm } from "./feedback.js";

/** Whether the Fix button is offered: a refused or conflicting note or feedback (a delete stands as it
 * is), unless nothing typed can fix it (feedback the organizers closed: the form is read-only now).
 * @param {store.Problem} p */
export function fixable(p) {
  if (String(p.error?.type || "").endsWith(":feedback-closed")) return false;
  return Boolean(p.mutation && (p.mutation.type === "note.put" || p.mutation.type === "feedback.put"));
}

/** The server's reason, as the protocol says to show it (title and detail). @param {store.Problem} p */
export function reasonOf(p) {
  if (p.error) return [p.error.title, p.error.detail].filter(Boolean).join(": ");
  return "";
}

/** A field's name for the user. @param {string} field @param {any[]} qs */
export function fieldLabel(field, qs) {
  const [head, key] = field.split(".");
  if (head === "answers") {
    const q = qs.find((x) => x.id === key);
    return q ? translated(q.texts, lang).text || key : key;
  }
  if (head === "body") return t("label.note");
  if (head === "comment") return t("feedback.comment");
  if (head === "share_with_organizers") return t("label.share");
  return field;
}

/** A value as the user typed or chose it. @param {string} field @param {any} value @param {any[]} qs */
export function shownValue(field, value, qs) {
  if (value === null || value === undefined || value === "") return t("fix.empty");
  const [head, key] = field.split(".");
  if (head === "answers") {
    const choice = (qs.find((x) => x.id === key)?.choices || []).find((/** @type {any} */ c) => c.id === value);
    if (choice) return translated(choice.texts, lang).text || String(value);
  }
  if (typeof value === "boolean") return value ? t("fix.yes") : t("fix.no");
  return Array.isArray(value) ? value.join(", ") : String(value);
}

/** Both values of each losing field: mine and the server's. @param {{field: string, mine: any, theirs: any}[]} values @param {any[]} qs */
export function bothValues(values, qs) {
  return h("dl", { class: "conflict-values" },
    values.map((v) => [
      h("dt", null, fieldLabel(v.field, qs)),
      h("dd", { class: "mine" }, h("span", { class: "which" }, t("fix.mine")), " ", h("span", { dir: "auto" }, shownValue(v.field, v.mine, qs))),
      h("dd", { class: "theirs" }, h("span", { class: "which" }, t("fix.theirs")), " ", h("span", { dir: "auto" }, shownValue(v.field, v.theirs, qs))),
    ]));
}

/** @param {string} arg the problem's mutation id @param {import("../routes.js").App} app */
export async function fixScreen(arg, app) {
  const problem = await store.problem(Number(arg));
  if (!problem || !fixable(problem)) {
    return h("section", null, h("h2", null, t("fix.title")), h("p", null, t("fix.nothing")), h("p", null, h("a", { href: "#/itinerary" }, t("nav.itinerary"))));
  }
  const qs = await questions();
  const values = await conflictValues(problem);
  const header = h("div", { class: "fix-reason" },
    h("p", null, problem.status === "conflict" ? t("fix.conflict_intro") : t("fix.rejected_intro", { reason: reasonOf(problem) })),
    values.length ? bothValues(values, qs) : null);
  const m = /** @type {store.Mutation} */ (problem.mutation);
  if (m.type === "feedback.put") {
    const visit = (await store.record("visit", m.args.visit_id))?.data;
    if (!visit) return h("section", null, h("h2", null, t("fix.title")), header);
    const { typed } = await feedbackAsTyped(problem);
    return feedbackForm(visit, qs, typed, app, { problem, header });
  }
  return noteFixer(problem, values, header, app);
}

/** @param {store.Problem} problem @param {{field: string, mine: any, theirs: any}[]} values @param {Node} header @param {import("../routes.js").App} app */
async function noteFixer(problem, values, header, app) {
  const args = /** @type {store.Mutation} */ (problem.mutation).args;
  const shown = (await notes()).find((n) => n.id === args.id);
  const doc = await store.getDoc("itinerary");
  /** @type {any[]} */
  const visits = doc ? doc.data.items.map((/** @type {any} */ i) => i.visit) : [];
  const wanted = args.visit_id ?? shown?.visit_id ?? null;
  const body = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "fix-note-body", dir: "auto", required: true, maxlength: 20000, value: args.body ?? shown?.body ?? "" }));
  const visit = /** @type {HTMLSelectElement} */ (h("select", { id: "fix-note-visit" },
    visits.map((v) => h("option", { value: v.id, selected: v.id === wanted }, v.title))));
  const share = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: "fix-note-share", checked: args.share_with_organizers ?? shown?.share_with_organizers ?? false }));
  const bodyConflict = values.find((v) => v.field === "body");
  return h(
    "form",
    { "data-editing": "", "aria-labelledby": "fix-title", class: "fix-note", onsubmit: async (/** @type {Event} */ e) => {
      e.preventDefault();
      if (!body.value.trim()) return;
      await fixNote(problem, { body: body.value, visit_id: visit.value || null, share_with_organizers: share.checked });
      /** @type {HTMLElement} */ (e.target).removeAttribute("data-editing");
      location.hash = "#/notes";
      app.changed();
    } },
    h("h2", { id: "fix-title" }, t("fix.note_title")),
    header,
    h("label", { for: "fix-note-visit" }, t("label.visit")), visit,
    h("label", { for: "fix-note-body" }, t("label.note")), body,
    bodyConflict
      ? h("div", { class: "actions" },
          h("button", { type: "button", onclick: () => { body.value = String(bodyConflict.mine ?? ""); } }, t("fix.use_mine")),
          h("button", { type: "button", onclick: () => { body.value = String(bodyConflict.theirs ?? ""); } }, t("fix.use_theirs")))
      : null,
    h("label", { class: "check" }, share, t("label.share")),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("action.save")),
      h("a", { href: "#/notes" }, t("action.cancel"))),
  );
}
