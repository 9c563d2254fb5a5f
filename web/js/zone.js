// Wall-clock times in a named time zone (the event's), whatever zone the phone is set to.

/** The wall clock of an instant in a zone: {date: "YYYY-MM-DD", time: "HH:MM"}. @param {string | Date} when @param {string} timeZone */
export function wall(when, timeZone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(when)).map((p) => [p.type, p.value]),
  );
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}` };
}

/** Minutes the zone is ahead of UTC at an instant. @param {number} ms @param {string} timeZone */
function offsetAt(ms, timeZone) {
  const w = wall(new Date(ms), timeZone);
  const [y, mo, d] = w.date.split("-").map(Number);
  const [h, mi] = w.time.split(":").map(Number);
  return Math.round((Date.UTC(y, mo - 1, d, h, mi) - Math.floor(ms / 60000) * 60000) / 60000);
}

/** RFC 3339 for a wall-clock date and time in a zone, with that zone's offset then ("2025-12-10T15:30:00+01:00").
 * @param {string} date "YYYY-MM-DD" @param {string} time "HH:MM" @param {string} timeZone */
export function stampIn(date, time, timeZone) {
  const [y, mo, d] = date.split("-").map(Number);
  const [h, mi] = time.split(":").map(Number);
  const asUtc = Date.UTC(y, mo - 1, d, h, mi);
  // The offset at the guessed instant, then again at the corrected one (a day that changes offset).
  let offset = offsetAt(asUtc, timeZone);
  offset = offsetAt(asUtc - offset * 60000, timeZone);
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  const hh = String(Math.floor(abs / 60)).padStart(2, "0");
  const mm = String(abs % 60).padStart(2, "0");
  return `${date}T${time}:00${sign}${hh}:${mm}`;
}

/** Minutes from midnight of a wall-clock "HH:MM". @param {string} time */
export function minutesOf(time) {
  const [h, m] = time.split(":").map(Number);
  return h * 60 + m;
}

/** "HH:MM" of minutes from midnight (kept within the day). @param {number} minutes */
export function clockOf(minutes) {
  const m = Math.max(0, Math.min(24 * 60 - 1, minutes));
  return `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}
