// My notes: write, edit, delete, share with organizers or keep private; all through the outbox.

import { h } from "../ui.js";
import { t } from "../i18n.js";
import { notes, saveNote, deleteNote } from "../model.js";
import * as store from "../store.js";

/** @param {string} arg "" (all notes), a visit id, or "new/<visit id>" / "edit/<note id>"
 * @param {{changed: () => void}} app */
export async function notesScreen(arg, app) {
  const mine = await notes();
  const doc = await store.getDoc("itinerary");
  /** @type {any[]} */
  const visits = doc ? doc.data.items.map((/** @type {any} */ i) => i.visit) : [];
  const titles = new Map(visits.map((v) => [v.id, v.title]));
  const [mode, rest = ""] = arg.startsWith("new/") || arg === "new" || arg.startsWith("edit/") ? [arg.split("/")[0], arg.split("/").slice(1).join("/")] : ["list", arg];
  if (mode === "new" || mode === "edit") {
    const note = mode === "edit" ? mine.find((n) => n.id === rest) : undefined;
    return editor(note, note ? note.visit_id : rest || null, visits, app);
  }
  const shown = rest ? mine.filter((n) => n.visit_id === rest) : mine;
  return h(
    "section",
    { "aria-labelledby": "notes-title" },
    h("h2", { id: "notes-title" }, rest ? t("notes.title_for", { visit: titles.get(rest) || rest }) : t("nav.notes")),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => { location.hash = `#/notes/new/${encodeURIComponent(rest)}`; } }, t("action.new_note"))),
    shown.length === 0 ? h("p", null, t("notes.empty")) : null,
    h(
      "ul",
      { class: "notes" },
      shown.map((n) =>
        h(
          "li",
          { class: "note", "data-note-id": n.id },
          h("p", { dir: "auto" }, n.body),
          h("div", { class: "meta" },
            n.visit_id ? titles.get(n.visit_id) || n.visit_id : "",
            " · ", n.share_with_organizers ? t("notes.shared") : t("notes.private"),
            n.pending ? h("span", { class: "pending" }, " · ", t("notes.waiting")) : null),
          h("div", { class: "actions" },
            h("button", { type: "button", "aria-label": t("action.edit_note", { text: n.body.slice(0, 30) }), onclick: () => { location.hash = `#/notes/edit/${encodeURIComponent(n.id)}`; } }, t("action.edit")),
            h("button", { type: "button", "aria-label": t("action.delete_note", { text: n.body.slice(0, 30) }), onclick: async () => {
              if (!window.confirm(t("confirm.delete_note"))) return;
              await deleteNote(n.id);
              app.changed();
            } }, t("action.delete"))),
        ),
      ),
    ),
  );
}

/** @param {import("../model.js").NoteView | undefined} note @param {string | null} visitId @param {any[]} visits @param {{changed: () => void}} app */
function editor(note, visitId, visits, app) {
  const body = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "note-body", dir: "auto", required: true, value: note ? note.body : "" }));
  const visit = /** @type {HTMLSelectElement} */ (h("select", { id: "note-visit" },
    visits.map((v) => h("option", { value: v.id, selected: v.id === visitId }, v.title))));
  const share = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: "note-share", checked: note ? note.share_with_organizers : false }));
  const back = visitId ? `#/notes/${encodeURIComponent(visitId)}` : "#/notes";
  return h(
    "form",
    { "data-editing": "", "aria-labelledby": "editor-title", onsubmit: async (/** @type {Event} */ e) => {
      e.preventDefault();
      if (!body.value.trim()) return;
      await saveNote({ id: note?.id, visit_id: visit.value || null, body: body.value, share_with_organizers: share.checked });
      /** @type {HTMLElement} */ (e.target).removeAttribute("data-editing");
      location.hash = `#/notes/${encodeURIComponent(visit.value)}`;
      app.changed();
    } },
    h("h2", { id: "editor-title" }, note ? t("notes.edit_title") : t("action.new_note")),
    h("label", { for: "note-visit" }, t("label.visit")), visit,
    h("label", { for: "note-body" }, t("label.note")), body,
    h("label", { class: "check" }, share, t("label.share")),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("action.save")),
      h("a", { href: back }, t("action.cancel"))),
  );
}
