// Visits at my site: the groups coming, how many people, when (in the event's time zone); and what
// participants said about my site (the feedback summary hosts read: their own sites, without names).
// Both are read online; the last answers are kept for offline reading.

import { h } from "../ui.js";
import { t, time, day, stamp } from "../i18n.js";
import { eventPath, kept } from "./online.js";
import { editableSites, sitePicker } from "./site_edit.js";

/** @param {any} row a SiteVisit @param {string} zone */
function visitItem(row, zone) {
  const v = row.visit;
  const status = v.status === "changed" || v.status === "cancelled" ? v.status : null;
  return h("li", { class: `visit ${status || ""}`, "data-visit-id": v.id },
    h("div", null, day(v.starts_at, zone)),
    h("span", { class: "time" }, `${time(v.starts_at, zone)}–${time(v.ends_at, zone)}`),
    h("span", { class: "title" }, v.title),
    status ? h("span", { class: `badge ${status}` }, t(`visit.${status}`)) : null,
    h("div", { class: "people", "data-participants": row.participants }, t("host.people_expected", { count: row.participants })),
    h("ul", { class: "groups" }, row.groups.map((/** @type {any} */ g) =>
      h("li", { "data-group-id": g.id }, t("host.group_size", { group: g.name, count: g.participants })))),
    v.meeting_point ? h("div", { class: "meeting" }, t("visit.meeting_point", { place: v.meeting_point })) : null);
}

/** @param {any} stats a VisitFeedback of the summary */
function feedbackItem(stats) {
  const rating = stats.rating;
  return h("li", { class: "feedback", "data-visit-id": stats.visit_id },
    h("h4", null, stats.title),
    h("p", null, t("host.responses", { responses: stats.responses, expected: stats.expected }),
      rating.count ? [" · ", t("host.mean_rating", { mean: rating.mean, count: rating.count })] : null),
    stats.questions.filter((/** @type {any} */ q) => q.kind === "text" && q.texts && q.texts.length).map((/** @type {any} */ q) => [
      h("p", { class: "question" }, q.text),
      h("ul", { class: "comments" }, q.texts.map((/** @type {any} */ a) => h("li", { dir: "auto" }, a.text))),
    ]),
    stats.comments.length
      ? [h("p", { class: "question" }, t("host.comments")),
          h("ul", { class: "comments" }, stats.comments.map((/** @type {any} */ c) => h("li", { dir: "auto" }, c.text)))]
      : null);
}

/** @param {string} arg a site id ("" for the first) @param {import("../routes.js").App} app */
export async function siteVisitsScreen(arg, app) {
  const sites = await editableSites(app.me);
  const site = sites.find((s) => s.id === arg) || sites[0];
  if (!site) return h("section", null, h("h2", null, t("nav.site_visits")), h("p", null, t("host.no_sites")));
  const event = eventPath(app.me);
  const visits = await kept(`${event}/sites/${encodeURIComponent(site.id)}/visits`, `site-visits:${site.id}`);
  const summary = await kept(`${event}/feedback/summary`, "feedback-summary");
  const now = Date.now();
  const zone = visits ? visits.data.timezone : "";
  /** @type {any[]} */
  const rows = visits ? visits.data.visits : [];
  const upcoming = rows.filter((r) => Date.parse(r.visit.ends_at) >= now);
  const past = rows.filter((r) => Date.parse(r.visit.ends_at) < now);
  const feedback = summary ? summary.data.visits.filter((/** @type {any} */ v) => v.site_id === site.id) : [];
  const stale = [visits, summary].find((d) => d && !d.fresh);
  return h(
    "section",
    { "aria-labelledby": "visits-title", class: "site-visits" },
    h("h2", { id: "visits-title" }, t("host.visits_title", { name: site.name })),
    sitePicker(sites, site.id, "site-visits"),
    stale ? h("p", { class: "pending" }, t("host.history_as_of", { time: stamp(stale.at) })) : null,
    !visits ? h("p", null, t("host.history_offline")) : null,
    visits ? h("p", { class: "meta" }, t("host.times_in", { zone })) : null,
    visits ? [
      h("h3", null, t("host.upcoming")),
      upcoming.length ? h("ol", { class: "visits" }, upcoming.map((r) => visitItem(r, zone))) : h("p", null, t("host.no_upcoming")),
      past.length ? [h("h3", null, t("host.past")), h("ol", { class: "visits past" }, past.map((r) => visitItem(r, zone)))] : null,
    ] : null,
    h("h3", null, t("host.feedback_title")),
    h("p", { class: "meta" }, t("host.feedback_intro")),
    summary && feedback.some((f) => f.responses > 0)
      ? h("ul", { class: "feedback-list" }, feedback.filter((f) => f.responses > 0).map(feedbackItem))
      : h("p", null, summary ? t("host.no_feedback") : t("host.history_offline")),
  );
}
