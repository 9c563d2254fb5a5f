// One site: description in my language (else English, else any), how to get there and in.

import { h } from "../ui.js";
import { t, lang } from "../i18n.js";
import { byId, translated } from "../model.js";


/** @param {string} siteId */
export async function siteScreen(siteId) {
  const site = (await byId("site")).get(siteId);
  if (!site) return h("section", null, h("h2", null, t("site.unknown")), h("p", null, h("a", { href: "#/itinerary" }, t("nav.itinerary"))));
  const description = translated(site.description, lang);
  const place = [site.address, [site.postcode, site.city].filter(Boolean).join(" ")].filter(Boolean).join(", ");
  const geo = `geo:${site.lat},${site.lon}?q=${site.lat},${site.lon}(${encodeURIComponent(site.name)})`;
  const osm = `https://www.openstreetmap.org/?mlat=${site.lat}&mlon=${site.lon}#map=17/${site.lat}/${site.lon}`;
  /** @type {[string, any][]} */
  const facts = [
    ["site.address", place],
    ["site.hours", (site.opening_hours || []).map((/** @type {any} */ o) =>
      h("div", null, `${o.days.map((/** @type {string} */ d) => t(`day.${d}`)).join(", ")} ${o.opens}–${o.closes}`))
      .concat(site.opening_hours_note ? [h("div", null, site.opening_hours_note)] : [])],
    ["site.meeting_point", site.meeting_point],
    ["site.accessibility", site.accessibility],
    ["site.contact", site.contact],
    ["site.website", site.website ? h("a", { href: site.website, rel: "noopener noreferrer", target: "_blank" }, site.website) : ""],
  ];
  return h(
    "article",
    { "aria-labelledby": "site-title" },
    h("h2", { id: "site-title" }, site.name),
    description.text
      ? h("p", { class: "description", lang: description.lang }, description.text,
          description.lang !== lang ? h("span", { class: "meta" }, " ", t("site.in_language", { lang: description.lang })) : null)
      : null,
    h("dl", null, facts.filter(([, v]) => (Array.isArray(v) ? v.length : v)).map(([key, v]) => [h("dt", null, t(key)), h("dd", null, v)])),
    h("div", { class: "actions" },
      h("a", { href: geo, class: "directions" }, t("site.directions")),
      h("a", { href: osm, rel: "noopener noreferrer", target: "_blank" }, t("site.osm"))),
  );
}
