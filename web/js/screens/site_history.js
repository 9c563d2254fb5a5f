// A site's history: who changed what and when, in the reader's own time zone and language; organizers
// may revert a change. Read online (GET …/sites/{id}/history); the last answer is kept for offline reading.

import { h } from "../ui.js";
import { t, lang } from "../i18n.js";
import { call, problemOf } from "../sync.js";
import { eventPath, kept } from "./online.js";
import { editableSites, fieldLabel, shownValue, sitePicker } from "./site_edit.js";

/** An instant on the reader's clock, with the zone's name. @param {string} iso */
function when(iso) {
  return new Intl.DateTimeFormat(lang, {
    day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    timeZoneName: "short",
  }).format(new Date(iso));
}

/** @param {string} arg a site id ("" for the first) @param {import("../routes.js").App} app */
export async function siteHistoryScreen(arg, app) {
  const sites = await editableSites(app.me);
  const site = sites.find((s) => s.id === arg) || sites[0];
  if (!site) return h("section", null, h("h2", null, t("nav.history")), h("p", null, t("host.no_sites")));
  const organizer = app.me.role === "organizer";
  // Kept for offline reading (a new key: the answer is kept as `data` now, no longer as `entries`).
  const found = await kept(`${eventPath(app.me)}/sites/${encodeURIComponent(site.id)}/history`, `site-history:${site.id}`);
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const error = h("p", { class: "warning", "aria-live": "polite" });
  return h(
    "section",
    { "aria-labelledby": "history-title", class: "site-history" },
    h("h2", { id: "history-title" }, t("host.history_title", { name: site.name })),
    sitePicker(sites, site.id, "site-history"),
    h("p", { class: "actions" }, h("a", { href: `#/site-edit/${encodeURIComponent(site.id)}` }, t("host.back_to_edit"))),
    h("p", { class: "meta" }, t("host.history_zone", { zone })),
    !found ? h("p", null, t("host.history_offline")) : null,
    found && !found.fresh ? h("p", { class: "pending" }, t("host.history_as_of", { time: when(found.at) })) : null,
    error,
    found && found.data.length === 0 ? h("p", null, t("host.history_empty")) : null,
    found
      ? h("ol", { class: "history" }, found.data.map((/** @type {any} */ e) =>
          h("li", { class: "change", "data-history-id": e.id, "data-version": e.version },
            h("div", { class: "who" },
              h("time", { datetime: e.at }, when(e.at)), " · ",
              h("span", { class: "author" }, e.account_name || e.account_id || t("host.unknown_author")), " · ",
              t("host.version", { version: e.version })),
            e.flagged ? h("p", { class: "warning" }, "⚠ ", t("host.flagged"), " ", h("span", { dir: "auto" }, e.flagged)) : null,
            h("dl", null, Object.entries(e.changes).map(([name, change]) => [
              h("dt", null, fieldLabel(name)),
              h("dd", null,
                h("del", { dir: "auto", "aria-label": t("host.old_value") }, shownValue(/** @type {any} */ (change).old)), " → ",
                h("ins", { dir: "auto", "aria-label": t("host.new_value") }, shownValue(/** @type {any} */ (change).new))),
            ])),
            e.reverted_by ? h("p", { class: "meta" }, t("host.reverted_by", { id: e.reverted_by })) : null,
            organizer && !e.reverted_by && found.fresh
              ? h("div", { class: "actions" }, h("button", {
                  type: "button", "aria-label": t("host.revert_change", { version: e.version }),
                  onclick: async () => {
                    if (!window.confirm(t("host.revert_confirm", { version: e.version }))) return;
                    try {
                      const response = await call(`${eventPath(app.me)}/history/${e.id}/revert`, { method: "POST" });
                      if (!response.ok) {
                        error.textContent = await problemOf(response);
                        return;
                      }
                    } catch (failure) {
                      error.textContent = t("host.needs_connection");
                      return;
                    }
                    await app.requestSync();
                  } }, t("host.revert")))
              : null,
          )))
      : null,
  );
}
