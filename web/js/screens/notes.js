// My notes: write, edit, delete, tag, share with organizers or keep private, attach photos; all through
// the outbox, so all of it works offline. Photos show from this phone's copy, or are fetched (with the
// token) when shown and kept for offline use.

import { h, mount } from "../ui.js";
import { t, lang } from "../i18n.js";
import { notes, note, saveNote, deleteNote, addPhoto, removePhoto, tagsOf, uuid7, NoteError } from "../model.js";
import { normalizeTags, tagProblem } from "../rules.js";
import { fetchPhoto } from "../sync.js";
import * as store from "../store.js";

// The tag the list is filtered by ("" for all): kept while the app runs, so a background sync's
// re-render keeps the user's choice.
let tagFilter = "";
// The editor on the screen: a background sync's render does not replace it (main.js), but its photos'
// upload states are redrawn.
/** @type {{arg: string, form: Element, refresh: () => Promise<void>} | null} */
let live = null;

/** @param {string} arg "" (all notes), a visit id, or "new/<visit id>" / "edit/<note id>"
 * @param {import("../routes.js").App} app */
export async function notesScreen(arg, app) {
  if (live && live.arg === arg && live.form.isConnected) void live.refresh();
  const mine = await notes();
  const doc = await store.getDoc("itinerary");
  /** @type {any[]} */
  const visits = doc ? doc.data.items.map((/** @type {any} */ i) => i.visit) : [];
  const titles = new Map(visits.map((v) => [v.id, v.title]));
  const [mode, rest = ""] = arg.startsWith("new/") || arg === "new" || arg.startsWith("edit/") ? [arg.split("/")[0], arg.split("/").slice(1).join("/")] : ["list", arg];
  if (mode === "new" || mode === "edit") {
    const existing = mode === "edit" ? mine.find((n) => n.id === rest) : undefined;
    return editor(arg, existing, existing ? existing.visit_id : rest || null, visits, app);
  }
  const here = rest ? mine.filter((n) => n.visit_id === rest) : mine;
  const tags = tagsOf(here, lang);
  if (tagFilter && !tags.includes(tagFilter)) tagFilter = "";
  const myId = app.me ? app.me.id : null;
  /** @type {Map<Element, string[]>} */
  const tagged = new Map();
  // Filtering hides notes in place: the picker keeps the focus while one goes through the tags.
  const filter = () => {
    for (const [item, its] of tagged) /** @type {HTMLElement} */ (item).hidden = Boolean(tagFilter) && !its.includes(tagFilter);
  };
  return h(
    "section",
    { "aria-labelledby": "notes-title" },
    h("h2", { id: "notes-title" }, rest ? t("notes.title_for", { visit: titles.get(rest) || rest }) : t("nav.notes")),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => { location.hash = `#/notes/new/${encodeURIComponent(rest)}`; } }, t("action.new_note"))),
    tags.length
      ? h("div", { class: "tag-filter" },
          h("label", { for: "notes-tag" }, t("notes.tag_filter")),
          h("select", { id: "notes-tag", onchange: (/** @type {Event} */ e) => {
            tagFilter = /** @type {HTMLSelectElement} */ (e.target).value;
            filter();
          } },
            h("option", { value: "", selected: !tagFilter }, t("notes.tag_all")),
            tags.map((tag) => h("option", { value: tag, selected: tag === tagFilter, dir: "auto" }, tag))))
      : null,
    here.length === 0 ? h("p", null, t("notes.empty")) : null,
    h(
      "ul",
      { class: "notes" },
      here.map((n) => {
        const item = h(
          "li",
          { class: "note", "data-note-id": n.id, hidden: Boolean(tagFilter) && !n.tags.includes(tagFilter) },
          h("p", { dir: "auto" }, n.body),
          tagList(n.tags),
          n.attachments.length
            ? h("ul", { class: "photos", "aria-label": t("photo.list") }, n.attachments.map((a, i) => h("li", null, thumbnail(a, i + 1))))
            : null,
          h("div", { class: "meta" },
            n.visit_id ? titles.get(n.visit_id) || n.visit_id : "",
            " · ", n.share_with_organizers ? t("notes.shared") : t("notes.private"),
            n.pending ? h("span", { class: "pending" }, " · ", t("notes.waiting")) : null),
          // Organizers pull the notes participants share with them: those are read-only here.
          n.author_id && n.author_id !== myId
            ? null
            : h("div", { class: "actions" },
                h("button", { type: "button", "aria-label": t("action.edit_note", { text: n.body.slice(0, 30) }), onclick: () => { location.hash = `#/notes/edit/${encodeURIComponent(n.id)}`; } }, t("action.edit")),
                h("button", { type: "button", "aria-label": t("action.delete_note", { text: n.body.slice(0, 30) }), onclick: async () => {
                  if (!window.confirm(t("confirm.delete_note"))) return;
                  await deleteNote(n.id);
                  app.changed();
                } }, t("action.delete"))),
        );
        tagged.set(item, n.tags);
        return item;
      }),
    ),
  );
}

/** @param {string[]} tags */
function tagList(tags) {
  if (!tags.length) return null;
  return h("ul", { class: "tags", "aria-label": t("notes.tags") }, tags.map((tag) => h("li", { dir: "auto" }, tag)));
}

/** @type {Map<string, Promise<string | null>>} object URLs of the photos shown, by hash, for the page's life */
const urls = new Map();
const HOUR = 3_600_000;

/** An object URL for a photo: this phone's copy, else fetched from the server (and kept) when it has
 * it; null when neither can be had now (offline, or not uploaded by its author yet).
 * @param {import("../model.js").AttachmentView} attachment */
function photoUrl(attachment) {
  const known = urls.get(attachment.sha256);
  if (known) return known;
  const made = (async () => {
    const kept = await store.photo(attachment.sha256);
    let blob = kept ? kept.blob : null;
    if (kept && Date.now() - kept.used_at > HOUR) await store.updatePhoto(kept.sha256, { used_at: Date.now() });
    if (!blob && attachment.status === "available" && navigator.onLine) blob = await fetchPhoto(attachment.sha256).catch(() => null);
    return blob ? URL.createObjectURL(blob) : null;
  })();
  urls.set(attachment.sha256, made);
  // What could not be had now may be had later (online, or once uploaded): ask again next time.
  void made.then((url) => { if (!url) urls.delete(attachment.sha256); });
  return made;
}

/** A photo's thumbnail; its image arrives when it is ready, never holding the screen up.
 * @param {import("../model.js").AttachmentView} attachment @param {number} n */
function thumbnail(attachment, n) {
  const alt = attachment.caption || t("photo.alt", { n });
  const box = h("span", { class: "photo", "data-sha256": attachment.sha256, "data-status": attachment.status },
    h("span", { class: "photo-missing" }, alt));
  void photoUrl(attachment).then((url) => {
    if (!url) {
      mount(box, h("span", { class: "photo-missing" }, attachment.status === "available" ? t("photo.offline", { n }) : t("photo.not_uploaded", { n })));
      return;
    }
    mount(box, h("img", { src: url, alt, width: 96, height: 96 }));
  });
  return box;
}

/** What a photo's upload has come to, for the editor. @param {import("../model.js").AttachmentView} attachment */
async function uploadState(attachment) {
  const kept = await store.photo(attachment.sha256);
  if (kept && kept.state === "refused") {
    return h("span", { class: "warning" }, t("photo.refused", { reason: kept.error ? kept.error.detail || kept.error.title : "" }));
  }
  return h("span", { class: attachment.status === "available" ? "" : "pending" },
    attachment.status === "available" ? t("photo.uploaded") : t("photo.waiting"));
}

/** @param {string} arg the route's @param {import("../model.js").NoteView | undefined} existing
 * @param {string | null} visitId @param {any[]} visits @param {import("../routes.js").App} app */
function editor(arg, existing, visitId, visits, app) {
  // A new note has its id from the start: adding a photo queues the note at once (it never waits).
  const id = existing ? existing.id : uuid7();
  let queued = Boolean(existing);
  /** @type {string[]} */
  let tags = existing ? [...existing.tags] : [];
  const body = /** @type {HTMLTextAreaElement} */ (h("textarea", { id: "note-body", dir: "auto", required: true, value: existing ? existing.body : "" }));
  const visit = /** @type {HTMLSelectElement} */ (h("select", { id: "note-visit" },
    visits.map((v) => h("option", { value: v.id, selected: v.id === visitId }, v.title))));
  const share = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", id: "note-share", checked: existing ? existing.share_with_organizers : false }));
  const back = visitId ? `#/notes/${encodeURIComponent(visitId)}` : "#/notes";

  // Tags: typed in one box (a comma or Enter makes a tag of what is before it), shown as chips that
  // each have a remove button; checked against the server's rules as they are added.
  const tagInput = /** @type {HTMLInputElement} */ (h("input", { type: "text", id: "note-tags", dir: "auto", autocomplete: "off", enterkeyhint: "done", "aria-describedby": "note-tags-hint note-tags-error" }));
  const tagError = h("p", { id: "note-tags-error", class: "error", "aria-live": "polite" });
  const chips = h("ul", { class: "tags editable", "aria-label": t("notes.tags") });
  /** The tags with what is still typed in the box; shows why they would be refused. */
  const currentTags = () => {
    const all = normalizeTags([...tags, tagInput.value]);
    const problem = tagProblem(all);
    tagError.textContent = problem ? t(problem.key, problem.vars) : "";
    tagInput.setAttribute("aria-invalid", problem ? "true" : "false");
    return { all, problem };
  };
  const drawTags = () => mount(chips, tags.map((tag) => h("li", { dir: "auto" }, h("span", null, tag),
    h("button", { type: "button", class: "chip-remove", "aria-label": t("notes.tag_remove", { tag }), onclick: () => {
      tags = tags.filter((x) => x !== tag);
      drawTags();
      currentTags();
      tagInput.focus();
    } }, "×"))));
  const takeTags = (/** @type {boolean} */ all) => {
    const parts = tagInput.value.split(",");
    const done = all ? parts : parts.slice(0, -1);
    if (!done.length) return;
    const next = normalizeTags([...tags, ...done]);
    if (tagProblem(next)) return void currentTags(); // kept in the box, with the reason shown
    tags = next;
    tagInput.value = all ? "" : parts[parts.length - 1];
    drawTags();
    currentTags();
  };
  tagInput.addEventListener("input", () => (tagInput.value.includes(",") ? takeTags(false) : currentTags()));
  tagInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault(); // Enter adds the tag; it does not submit the note
      takeTags(true);
    }
  });
  drawTags();

  // Photos: each stored on the phone at once, with the note's change naming it; uploaded by a sync.
  const photoError = h("p", { id: "note-photo-error", class: "error", "aria-live": "polite" });
  const photoList = h("ul", { class: "photos editable", "aria-label": t("photo.list") });
  let drawn = "";
  const drawPhotos = async () => {
    const current = queued ? await note(id) : undefined;
    const attachments = current ? current.attachments : [];
    const states = await Promise.all(attachments.map(uploadState));
    // Redrawn only when something changed: a background sync never takes the focus off a button.
    const shown = JSON.stringify(attachments.map((a, i) => [a.sha256, states[i].textContent]));
    if (shown === drawn) return;
    drawn = shown;
    const items = attachments.map((a, i) => h("li", null,
      thumbnail(a, i + 1),
      h("span", { class: "photo-state" }, states[i]),
      h("button", { type: "button", "aria-label": t("photo.remove", { n: i + 1 }), onclick: async () => {
        await removePhoto(id, a.sha256);
        await drawPhotos();
        addButton.focus(); // the button pressed is gone: the focus goes to the next thing to do
        app.changed();
      } }, t("photo.remove_button"))));
    mount(photoList, items);
  };
  const fields = () => ({ id, visit_id: visit.value || null, body: body.value, share_with_organizers: share.checked, tags: currentTags().all });
  const file = /** @type {HTMLInputElement} */ (h("input", { type: "file", accept: "image/*", capture: "environment", hidden: true, onchange: async () => {
    photoError.textContent = "";
    try {
      for (const picked of Array.from(file.files || [])) {
        if (!queued) {
          await saveNote(fields()); // the note first, as typed so far: the photo is attached to it
          queued = true;
        }
        await addPhoto(id, picked);
      }
    } catch (error) {
      photoError.textContent = error instanceof NoteError ? t(error.key, error.vars) : String(error);
    }
    file.value = "";
    await drawPhotos();
    app.changed();
  } }));
  const addButton = h("button", { type: "button", onclick: () => file.click() }, t("photo.add"));
  void drawPhotos();

  const form = h(
    "form",
    { "data-editing": "", "aria-labelledby": "editor-title", onsubmit: async (/** @type {Event} */ e) => {
      e.preventDefault();
      if (!body.value.trim()) return;
      const { problem } = currentTags();
      if (problem) {
        tagInput.focus();
        return;
      }
      await saveNote(fields());
      /** @type {HTMLElement} */ (e.target).removeAttribute("data-editing");
      location.hash = `#/notes/${encodeURIComponent(visit.value)}`;
      app.changed();
    } },
    h("h2", { id: "editor-title" }, existing ? t("notes.edit_title") : t("action.new_note")),
    h("label", { for: "note-visit" }, t("label.visit")), visit,
    h("label", { for: "note-body" }, t("label.note")), body,
    h("label", { for: "note-tags" }, t("notes.tags")),
    h("p", { id: "note-tags-hint", class: "hint" }, t("notes.tag_hint")),
    chips, tagInput, tagError,
    h("label", { class: "check" }, share, t("label.share")),
    h("h3", null, t("photo.title")),
    photoList,
    h("div", { class: "actions" }, addButton, file),
    photoError,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("action.save")),
      h("a", { href: back }, t("action.cancel"))),
  );
  if (!(live && live.arg === arg && live.form.isConnected)) live = { arg, form, refresh: drawPhotos };
  return form;
}
