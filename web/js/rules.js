// What the server accepts in a note, checked on the phone before anything is queued: the limits of
// NotePutArgs and Attachment in schemas/sync.py (tests/test_web_notes.py proves these numbers are the
// schema's) and the blob media types of §9.2. The ONE place in the app that knows them; what the server
// still refuses shows as a rejected change with its reason.

/** `tags`: at most 32, each 1–64 characters (code points, as msgspec counts them); no pattern. */
export const TAGS = { maxItems: 32, minLength: 1, maxLength: 64 };
/** `attachments`: at most 10 per note. */
export const MAX_ATTACHMENTS = 10;
/** The server's default STUDYVISIT_MAX_BLOB_BYTES (20 MiB): a bigger photo is refused before it is kept. */
export const MAX_PHOTO_BYTES = 20 * 1024 * 1024;

/** Tags as typed ("a, b" or one at a time): trimmed, in Unicode NFC, empties and repeats dropped.
 * @param {string[]} tags */
export function normalizeTags(tags) {
  /** @type {string[]} */
  const out = [];
  for (const raw of tags) {
    for (const part of raw.split(",")) {
      const tag = part.trim().normalize("NFC");
      if (tag && !out.includes(tag)) out.push(tag);
    }
  }
  return out;
}

/** Why these tags would be refused (a message key and its values), or null when they are fine.
 * @param {string[]} tags @returns {{key: string, vars: Record<string, string | number>} | null} */
export function tagProblem(tags) {
  if (tags.length > TAGS.maxItems) return { key: "notes.tag_too_many", vars: { max: TAGS.maxItems } };
  for (const tag of tags) {
    const length = [...tag].length;
    if (length < TAGS.minLength || length > TAGS.maxLength) {
      return { key: "notes.tag_too_long", vars: { tag: tag.slice(0, 20), max: TAGS.maxLength } };
    }
  }
  return null;
}

/** The media type of a file from its first bytes (magic numbers), as the server sniffs it (the twin of
 * sync/blobs.py sniff_media_type), or null for a file the server would refuse.
 * @param {Uint8Array} head at least the first 64 bytes (or the whole file) @returns {string | null} */
export function sniffMediaType(head) {
  const at = (/** @type {number} */ i, /** @type {string} */ text) => [...text].every((c, k) => head[i + k] === c.charCodeAt(0));
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "image/jpeg";
  if (head[0] === 0x89 && at(1, "PNG\r\n\x1a\n")) return "image/png";
  if (at(0, "RIFF") && at(8, "WEBP")) return "image/webp";
  if (at(0, "%PDF-")) return "application/pdf";
  if (at(4, "ftyp")) {
    const boxSize = ((head[0] << 24) | (head[1] << 16) | (head[2] << 8) | head[3]) >>> 0;
    const box = head.subarray(0, Math.min(head.length, boxSize));
    const brand = (/** @type {number} */ i) => String.fromCharCode(...box.subarray(i, i + 4));
    const heic = ["heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs"];
    const compatible = [];
    for (let i = 16; i + 4 <= box.length; i += 4) compatible.push(brand(i));
    const major = brand(8);
    if (heic.includes(major) || (["mif1", "msf1"].includes(major) && compatible.some((b) => heic.includes(b)))) {
      return "image/heic";
    }
  }
  return null;
}
