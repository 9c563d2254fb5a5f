// My group's visits by day, in the event's time zone, with the walk (or ride) to each.

import * as store from "../store.js";
import { h } from "../ui.js";
import { t, time, day, dayKey } from "../i18n.js";
import { changesSection } from "./changes.js";

/** @param {any} leg */
export function legLine(leg) {
  if (!leg) return null;
  const km = (leg.distance_m / 1000).toFixed(1);
  const how =
    leg.mode === "walk"
      ? t("leg.walk", { minutes: leg.walking_minutes, km })
      : t(`leg.${leg.mode}`, { minutes: leg.travel_minutes, km });
  return h("p", { class: "leg" }, how, leg.warning ? h("span", { class: "warning" }, " ⚠ ", leg.warning) : null);
}

/** @param {import("../routes.js").App} app */
export async function itineraryScreen(app) {
  const doc = await store.getDoc("itinerary");
  if (!doc) return h("section", null, h("h2", null, t("nav.itinerary")), h("p", null, t("itinerary.empty")));
  const it = doc.data;
  const zone = it.timezone;
  const phoneZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  /** @type {Map<string, any[]>} */
  const days = new Map();
  for (const item of it.items) {
    const key = dayKey(item.visit.starts_at, zone);
    if (!days.has(key)) days.set(key, []);
    /** @type {any[]} */ (days.get(key)).push(item);
  }
  return h(
    "section",
    { "aria-labelledby": "itinerary-title" },
    h("h2", { id: "itinerary-title" }, t("nav.itinerary")),
    phoneZone !== zone ? h("p", { class: "zone-note" }, t("itinerary.zone_note", { zone, phone: phoneZone })) : null,
    await changesSection(app),
    [...days.values()].map((items) => [
      h("h3", null, day(items[0].visit.starts_at, zone)),
      h(
        "ol",
        { class: "visits" },
        items.map((item) => {
          const v = item.visit;
          const status = v.status === "changed" || v.status === "cancelled" ? v.status : null;
          return h(
            "li",
            { class: `visit ${status || ""}`, "data-visit-id": v.id },
            legLine(item.leg),
            h("span", { class: "time" }, `${time(v.starts_at, zone)}–${time(v.ends_at, zone)}`),
            v.site_id ? h("a", { class: "title", href: `#/site/${encodeURIComponent(v.site_id)}` }, v.title) : h("span", { class: "title" }, v.title),
            status ? h("span", { class: `badge ${status}` }, t(`visit.${status}`)) : null,
            item.site_name && item.site_name !== v.title ? h("div", { class: "place" }, item.site_name) : null,
            v.meeting_point ? h("div", { class: "meeting" }, t("visit.meeting_point", { place: v.meeting_point })) : null,
            h("div", { class: "actions" }, h("a", { href: `#/notes/${encodeURIComponent(v.id)}`, "aria-label": t("visit.notes_for", { visit: v.title }) }, t("visit.notes_link"))),
          );
        }),
      ),
    ]),
  );
}
