// "What changed" on the itinerary: the server's change list (GET …/changes, kept by sync.js in the docs
// store), the changes since I last said I had seen them marked new; "I've seen these" moves that mark.

import { h } from "../ui.js";
import { t, lang, stamp, dirOf } from "../i18n.js";
import * as store from "../store.js";

/** The language asked for last when the kept list was in another one (one sync per switch). */
let refetchedFor = "";

/** The new and the earlier changes, newest first. @param {any} doc @param {string} seen */
export function splitChanges(doc, seen) {
  // Before the marker first moves, the "fresh" list is the whole list: all of it is news.
  const fresh = (doc.fresh || []).filter((/** @type {any} */ c) => seen === doc.seen || c.at > seen);
  const told = new Set(fresh.map((/** @type {any} */ c) => `${c.visit_id} ${c.kind}`));
  const earlier = (doc.all || []).filter((/** @type {any} */ c) => !told.has(`${c.visit_id} ${c.kind}`));
  return { fresh: fresh.slice().reverse(), earlier: earlier.slice().reverse() };
}

/** @param {import("../routes.js").App} app */
export async function changesSection(app) {
  const doc = await store.getDoc("changes");
  if (!doc) return null;
  if (doc.lang !== lang && navigator.onLine && refetchedFor !== lang) {
    refetchedFor = lang;
    void app.requestSync();
  }
  const seen = (await store.getMeta("changes_seen")) || doc.seen;
  const { fresh, earlier } = splitChanges(doc, seen);
  const since = (await store.getMeta("changes_baseline")) || doc.seen;
  const item = (/** @type {any} */ c, /** @type {boolean} */ isNew) =>
    h("li", { class: `change${isNew ? " new" : ""}`, "data-visit-id": c.visit_id, "data-kind": c.kind },
      isNew ? h("span", { class: "badge new" }, t("changes.new")) : null,
      // The sentence's direction is its language's (an Arabic sentence may start with a Latin name).
      h("span", { class: "text", lang: c.lang, dir: dirOf(c.lang) }, c.text));
  return h(
    "section",
    { class: "changes", "aria-labelledby": "changes-title" },
    h("h3", { id: "changes-title" }, t("changes.title")),
    fresh.length + earlier.length === 0 ? h("p", null, t("changes.none", { time: stamp(since) })) : null,
    fresh.length + earlier.length
      ? h("ul", { class: "change-list", lang: doc.lang }, fresh.map((c) => item(c, true)), earlier.map((c) => item(c, false)))
      : null,
    fresh.length
      ? h("div", { class: "actions" }, h("button", { type: "button", onclick: async () => {
          // The newest change time the server told in the list I am looking at.
          await store.setMeta("changes_seen", doc.next_since);
          await app.render();
        } }, t("changes.seen")))
      : null,
  );
}
