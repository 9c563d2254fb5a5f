// What participants see: the change list in each language as the participants' apps tell it, and for
// each change how many participants' devices have pulled it and whom it has not reached yet
// (GET …/changes/delivery). Online only: the counts are the server's.

import { h } from "../ui.js";
import { t, stamp, dirOf, LANGUAGES, NAMES } from "../i18n.js";
import { eventPath, getJson, unavailable } from "./online.js";

/** @param {string} _arg @param {import("../routes.js").App} app */
export async function deliveryScreen(_arg, app) {
  const base = eventPath(app.me);
  const event = await getJson(base);
  // Since the programme was published: what a participant who read it then has been told since.
  const since = (event.data && event.data.updated_at) || "1970-01-01T00:00:00Z";
  const answers = event.data ? await Promise.all(
    LANGUAGES.map((lang) => getJson(`${base}/changes/delivery?${new URLSearchParams({ since, lang })}`)),
  ) : [event];
  const failed = answers.find((a) => !a.data);
  if (failed) return unavailable(t("nav.changes"), failed.error || "");
  /** @type {any[]} */
  const told = answers.map((a) => a.data);
  const [first] = told;
  return h(
    "section",
    { "aria-labelledby": "delivery-title", class: "delivery" },
    h("h2", { id: "delivery-title" }, t("nav.changes")),
    h("p", null, t("delivery.since", { time: stamp(since) })),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => void app.render() }, t("delivery.refresh"))),
    first.changes.length === 0 ? h("p", null, t("delivery.none")) : null,
    h(
      "ol",
      { class: "change-list" },
      first.changes.map((/** @type {any} */ d, /** @type {number} */ i) =>
        h(
          "li",
          { class: "change", "data-visit-id": d.change.visit_id, "data-kind": d.change.kind },
          h("p", { class: "reach", "data-pulled": d.devices_pulled, "data-devices": d.devices },
            t("delivery.devices", { pulled: d.devices_pulled, devices: d.devices }), " · ",
            t("delivery.accounts", { pulled: d.accounts_pulled, accounts: d.accounts })),
          h("dl", { class: "texts" },
            told.map((answer, j) => [
              h("dt", null, NAMES[LANGUAGES[j]]),
              h("dd", { lang: LANGUAGES[j], dir: dirOf(LANGUAGES[j]) }, answer.changes[i].change.text),
            ])),
          d.accounts_pending.length
            ? h("details", null,
                h("summary", null, t("delivery.pending", { count: d.accounts_pending.length })),
                h("ul", { class: "pending-list" },
                  d.accounts_pending.map((/** @type {any} */ a) =>
                    h("li", { "data-account-id": a.id }, a.name, a.group_id ? ` (${a.group_id})` : "", " · ",
                      a.devices ? t("delivery.not_pulled", { devices: a.devices }) : t("delivery.never_synced")))))
            : null,
        ),
      ),
    ),
  );
}
