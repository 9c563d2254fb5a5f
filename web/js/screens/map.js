// The day's places on a map: numbered markers in visit order, the route between them (the itinerary's
// legs), and my position only when I ask. The same stops are listed below the map as an ordered list,
// which is what a screen reader or a keyboard user reads (a map alone is not accessible).

import * as store from "../store.js";
import { h } from "../ui.js";
import { t, lang, day, dayKey, time } from "../i18n.js";
import { byId } from "../model.js";
import { legLine } from "./itinerary.js";

/** @typedef {{n: number, place: string, siteId: string | null, name: string, lat: number, lon: number,
 *   visits: any[], leg: any}} Stop */

// The route's look by how the group gets there: a walk solid, a ride dashed.
const ROUTE = { color: "#8a3b00", weight: 4, opacity: 0.85, interactive: false, smoothFactor: 0 };
const RIDE_DASH = "8 8";

// What outlives a redraw of the screen (a sync redraws it): the view of the day shown, and the position
// I asked for. In this page's memory only: the position is never stored or sent anywhere.
/** @type {{day: string, center: [number, number] | null, zoom: number, position: GeolocationPosition | null}} */
const kept = { day: "", center: null, zoom: 0, position: null };

// The screen last built, and what it showed: a redraw with nothing new (a sync that changed nothing on it)
// keeps the map as it is, panned, zoomed and with my position, instead of building it again.
/** @type {{signature: string, node: HTMLElement | null}} */
const shown = { signature: "", node: null };

/** The tile URL template the server put in index.html ("" for none: a plain background). */
function tileUrl() {
  const meta = /** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="tile-url"]'));
  const url = meta ? meta.content : "";
  return url.includes("{z}") ? url : "";
}

/** The itinerary's days in the event's zone, in order: [day key, first start]. @param {any[]} items @param {string} zone */
function daysOf(items, zone) {
  /** @type {Map<string, string>} */
  const days = new Map();
  for (const item of items) {
    const key = dayKey(item.visit.starts_at, zone);
    if (!days.has(key)) days.set(key, item.visit.starts_at);
  }
  return [...days.entries()];
}

/** The day's stops: its visits in itinerary order (cancelled ones and those with no place left out),
 * consecutive visits at one place making one stop, numbered from 1.
 * @param {any[]} items @param {Map<string, any>} sites @param {string} zone @param {string} key @returns {Stop[]} */
export function stopsOf(items, sites, zone, key) {
  /** @type {Stop[]} */
  const stops = [];
  for (const item of items) {
    const visit = item.visit;
    if (visit.status === "cancelled" || dayKey(visit.starts_at, zone) !== key) continue;
    const site = visit.site_id ? sites.get(visit.site_id) : undefined;
    const lat = site ? site.lat : item.lat;
    const lon = site ? site.lon : item.lon;
    if (typeof lat !== "number" || typeof lon !== "number") continue;
    const place = visit.site_id || `${lat},${lon}`;
    const last = stops[stops.length - 1];
    if (last && last.place === place) {
      last.visits.push(visit);
      continue;
    }
    const name = (site && site.name) || item.site_name || visit.venue || visit.title;
    stops.push({ n: stops.length + 1, place, siteId: visit.site_id || null, name, lat, lon, visits: [visit], leg: item.leg });
  }
  return stops;
}

/** The way from the stop before to this one: the leg's own geometry when the itinerary gives one (a GeoJSON
 * LineString), else a straight line. None when the itinerary has no leg there (one of everything, as an
 * organizer's, lists parallel visits of several groups: no route joins them).
 * @param {Stop} from @param {Stop} to @returns {[number, number][] | null} */
function wayTo(from, to) {
  if (!to.leg) return null;
  const geometry = to.leg.geometry;
  // The leg's path only when it starts at the stop before (a place the map leaves out cannot be on it).
  const fromThere = from.visits.some((v) => v.id === to.leg.from_visit_id);
  if (fromThere && geometry && geometry.type === "LineString" && Array.isArray(geometry.coordinates) && geometry.coordinates.length > 1) {
    return geometry.coordinates.map((/** @type {number[]} */ c) => /** @type {[number, number]} */ ([c[1], c[0]]));
  }
  return [[from.lat, from.lon], [to.lat, to.lon]];
}

/** @param {string} text */
function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

/** @param {string} arg the day ("YYYY-MM-DD"), or "" for today (in the event's zone) or else the first day */
export async function mapScreen(arg) {
  const doc = await store.getDoc("itinerary");
  const heading = h("h2", { id: "map-title" }, t("nav.map"));
  if (!doc || !doc.data.items.length) return h("section", { "aria-labelledby": "map-title" }, heading, h("p", null, t("itinerary.empty")));
  const it = doc.data;
  const zone = it.timezone;
  const days = daysOf(it.items, zone);
  const today = dayKey(new Date().toISOString(), zone);
  const wanted = arg || (days.some(([k]) => k === today) ? today : days[0][0]);
  const key = days.some(([k]) => k === wanted) ? wanted : days[0][0];
  const stops = stopsOf(it.items, await byId("site"), zone, key);
  const signature = JSON.stringify([key, lang, days, stops]);
  if (shown.node && shown.node.isConnected && shown.signature === signature) return shown.node;

  const picker = h(
    "nav",
    { "aria-label": t("map.days"), class: "map-days" },
    h("ul", null, days.map(([k, first]) =>
      h("li", null, h("a", { href: `#/map/${k}`, "aria-current": k === key ? "date" : null, "data-day": k }, day(first, zone))))),
  );
  const message = h("p", { class: "map-message", "aria-live": "polite" });
  const locate = h("button", { type: "button", class: "map-locate" }, t("map.locate"));
  const area = h("div", { class: "map", role: "region", "aria-label": t("map.label", { day: day(days.find(([k]) => k === key)?.[1] || "", zone) }) });
  const list = h(
    "ol",
    { class: "map-stops" },
    stops.map((stop) =>
      h(
        "li",
        { "data-site-id": stop.siteId || "", "data-lat": stop.lat, "data-lon": stop.lon },
        stop.n > 1 ? legLine(stop.leg) : null, // the first stop's leg comes from the day before
        stop.siteId ? h("a", { class: "title", href: `#/site/${encodeURIComponent(stop.siteId)}` }, stop.name) : h("span", { class: "title" }, stop.name),
        // Each visit's times as an isolated left-to-right run, so that an Arabic line does not reorder them.
        stop.visits.map((v) =>
          h("div", { class: "times" }, h("span", { dir: "ltr" }, `${time(v.starts_at, zone)}–${time(v.ends_at, zone)}`), " ", h("bdi", null, v.title))),
      ),
    ),
  );
  if (!stops.length) {
    return h("section", { "aria-labelledby": "map-title", class: "map-screen" }, heading, picker, h("p", null, t("map.no_places")));
  }
  const screen = h(
    "section",
    { "aria-labelledby": "map-title", class: "map-screen" },
    heading,
    picker,
    area,
    h("div", { class: "actions" }, locate, message),
    h("h3", { id: "map-stops-title" }, t("map.stops")),
    list,
  );
  list.setAttribute("aria-labelledby", "map-stops-title");
  if (kept.day !== key) Object.assign(kept, { day: key, center: null, zoom: 0 });
  whenShown(area, async () => drawMap(area, stops, locate, message));
  Object.assign(shown, { signature, node: screen });
  return screen;
}

/** Run `draw` once the element is laid out (Leaflet needs its size), and the cleanup it returns once the
 * element leaves the page (a redraw or another screen replaced it).
 * @param {HTMLElement} el @param {() => Promise<() => void>} draw */
function whenShown(el, draw) {
  /** @type {Promise<() => void> | null} */
  let drawn = null;
  const observer = new ResizeObserver(() => {
    if (!el.isConnected) {
      observer.disconnect();
      if (drawn) void drawn.then((cleanup) => cleanup());
    } else if (!drawn && el.clientWidth > 0) {
      drawn = draw().catch((error) => {
        console.error(error);
        return () => undefined;
      });
    }
  });
  observer.observe(el);
}

/** @param {HTMLElement} area @param {Stop[]} stops @param {HTMLElement} locate @param {HTMLElement} message */
async function drawMap(area, stops, locate, message) {
  // Leaflet's UMD build, loaded only for this screen, defines window.L (an ES module import of it works
  // under script-src 'self', unlike an inline script).
  await import("../../vendor/leaflet/leaflet.js");
  const L = /** @type {any} */ (window).L;
  const rtl = document.documentElement.dir === "rtl";
  const map = L.map(area, { zoomControl: false, attributionControl: false, zoomSnap: 0.5 });
  L.control.zoom({ position: rtl ? "topright" : "topleft", zoomInTitle: t("map.zoom_in"), zoomOutTitle: t("map.zoom_out") }).addTo(map);
  const tiles = tileUrl();
  if (tiles) {
    // CORS requests, so that the service worker can tell a whole tile from an error and keep it for offline
    // use; the origin as referrer, which tile services such as OpenStreetMap's require of web apps (the app
    // otherwise sends none).
    L.tileLayer(tiles, { crossOrigin: "anonymous", referrerPolicy: "strict-origin", maxZoom: 19 }).addTo(map);
    // OpenStreetMap's licence asks for this credit wherever its map is shown.
    L.control
      .attribution({ position: rtl ? "bottomleft" : "bottomright", prefix: '<a href="https://leafletjs.com">Leaflet</a>' })
      .addAttribution(`<a href="https://www.openstreetmap.org/copyright">${escapeHtml(t("map.attribution"))}</a>`)
      .addTo(map);
  }
  for (let i = 1; i < stops.length; i++) {
    const way = wayTo(stops[i - 1], stops[i]);
    if (!way) continue;
    const mode = stops[i].leg.mode || "walk";
    L.polyline(way, { ...ROUTE, className: `map-route map-route-${mode}`, dashArray: mode === "walk" ? null : RIDE_DASH }).addTo(map);
  }
  // One marker per place, with the number of each stop there ("1, 5" for a day that starts and ends at one
  // place): markers at one spot would hide each other's numbers.
  /** @type {Map<string, Stop[]>} */
  const places = new Map();
  for (const stop of stops) places.set(stop.place, [...(places.get(stop.place) || []), stop]);
  for (const here of places.values()) {
    const numbers = here.map((s) => String(s.n)).join(", ");
    const label = t("map.marker", { number: numbers, place: here[0].name });
    const siteId = here[0].siteId;
    // Left to right in every language, like the map under it (in Arabic "1, 3" would read "3 ,1").
    const badge = siteId
      ? h("a", { href: `#/site/${encodeURIComponent(siteId)}`, "aria-label": label, title: label, dir: "ltr" }, numbers)
      : h("span", { role: "img", "aria-label": label, title: label, dir: "ltr" }, numbers);
    const width = Math.max(32, 14 + 9 * numbers.length);
    const icon = L.divIcon({ className: "map-marker", html: badge, iconSize: [width, 32] });
    L.marker([here[0].lat, here[0].lon], { icon, interactive: false, keyboard: false }).addTo(map);
  }
  const bounds = L.latLngBounds(stops.map((s) => [s.lat, s.lon]));
  if (kept.center) map.setView(kept.center, kept.zoom);
  else map.fitBounds(bounds, { padding: [28, 28], maxZoom: 16 });
  map.on("moveend", () => {
    const c = map.getCenter();
    Object.assign(kept, { center: [c.lat, c.lng], zoom: map.getZoom() });
  });

  /** @type {any[]} */
  let me = [];
  /** @param {GeolocationPosition} position @param {boolean} pan */
  const showPosition = (position, pan) => {
    for (const layer of me) layer.remove();
    const at = [position.coords.latitude, position.coords.longitude];
    me = [
      L.circle(at, { radius: position.coords.accuracy, className: "map-accuracy", color: "#1a56db", weight: 1, fillOpacity: 0.12, interactive: false }).addTo(map),
      L.circleMarker(at, { radius: 8, className: "map-me", color: "#fff", weight: 3, fillColor: "#1a56db", fillOpacity: 1, interactive: false }).addTo(map),
    ];
    if (pan) map.panTo(at);
    message.textContent = t("map.located", { metres: Math.round(position.coords.accuracy) });
  };
  if (kept.position) showPosition(kept.position, false);
  // The position is asked for only here, on the user's press, once per press (no watching).
  locate.addEventListener("click", () => {
    if (!("geolocation" in navigator)) {
      message.textContent = t("map.locate_unavailable");
      return;
    }
    message.textContent = t("map.locating");
    navigator.geolocation.getCurrentPosition(
      (position) => {
        kept.position = position;
        showPosition(position, true);
      },
      (error) => {
        message.textContent = t(error.code === error.PERMISSION_DENIED ? "map.locate_denied" : "map.locate_unavailable");
      },
      { enableHighAccuracy: true, timeout: 20_000, maximumAge: 30_000 },
    );
  });
  area.dataset.ready = "true";
  return () => map.remove();
}
