// One site: description in my language (else English, else any), how to get there and in.
// `siteArticle` draws a site as participants see it; the host's editor shows its live preview with it.

import { h } from "../ui.js";
import { t, lang } from "../i18n.js";
import { siteView, translated } from "../model.js";

/** A site as participants see it. `headingId` names the title (unique when two are on one page);
 * `level` is the title's heading level.
 * @param {any} site @param {{readerLang?: string, headingId?: string, level?: number}} [options] */
export function siteArticle(site, options = {}) {
  const reader = options.readerLang || lang;
  const headingId = options.headingId || "site-title";
  const description = translated(site.description, reader);
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
    { "aria-labelledby": headingId, class: "site" },
    h(`h${options.level || 2}`, { id: headingId }, site.name),
    description.text
      ? h("p", { class: "description", lang: description.lang, dir: "auto" }, description.text,
          description.lang !== reader ? h("span", { class: "meta" }, " ", t("site.in_language", { lang: description.lang })) : null)
      : null,
    h("dl", null, facts.filter(([, v]) => (Array.isArray(v) ? v.length : v)).map(([key, v]) => [h("dt", null, t(key)), h("dd", { dir: "auto" }, v)])),
    h("div", { class: "actions" },
      h("a", { href: geo, class: "directions" }, t("site.directions")),
      h("a", { href: osm, rel: "noopener noreferrer", target: "_blank" }, t("site.osm"))),
  );
}

/** @param {string} siteId @param {{me: any}} [app] */
export async function siteScreen(siteId, app) {
  // With this device's own corrections on top while they wait to sync.
  const view = await siteView(siteId);
  const site = view && view.site;
  if (!site) return h("section", null, h("h2", null, t("site.unknown")), h("p", null, h("a", { href: "#/itinerary" }, t("nav.itinerary"))));
  const me = app && app.me;
  const mayEdit = me && (me.role === "organizer" || (me.role === "host" && (me.site_ids || []).includes(siteId)));
  const article = siteArticle(site);
  if (mayEdit) {
    article.append(h("p", null, h("a", { href: `#/site-edit/${encodeURIComponent(siteId)}` }, t("host.edit_this_site"))));
  }
  return article;
}
