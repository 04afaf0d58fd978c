/**
 * The `at` of a time-travel link (`/?at=...`): the moment the page shows, in the formats the history
 * endpoints accept (docs/history.md): Unix seconds, ISO 8601 (no offset = UTC), `now`, or relative
 * to now (`-15m`; units s m h d w). Pure: `now` (Unix seconds) is an argument.
 */

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/** The moment `raw` names (Unix seconds), or null when it is empty or malformed. */
export function parseAt(raw: string | null | undefined, nowS: number): number | null {
  const s = (raw ?? "").trim();
  if (!s) return null;
  if (s.toLowerCase() === "now") return nowS;
  if (/^[+-]?\d+(\.\d+)?$/.test(s)) {
    const v = Number(s);
    return Number.isFinite(v) && v >= 0 ? v : null;
  }
  const rel = /^-(\d+(?:\.\d+)?)([smhdw])$/i.exec(s);
  if (rel) return nowS - Number(rel[1]) * UNITS[rel[2]!.toLowerCase()]!;
  const m = ISO.exec(s);
  if (!m) return null;
  const [, y, mo, d, h = "0", mi = "0", sec = "0", frac = "", zone] = m;
  const month = Number(mo) - 1;
  const ms = Date.UTC(Number(y), month, Number(d), Number(h), Number(mi), Number(sec));
  const check = new Date(ms);
  // reject 2026-02-30 and 25:00 rather than letting Date roll them over
  if (check.getUTCMonth() !== month || check.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 ||
      Number(sec) > 59) {
    return null;
  }
  let t = ms / 1000 + (frac ? Number(`0.${frac}`) : 0);
  if (zone && zone.toUpperCase() !== "Z") {
    const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
    const off = (Number(z[2]) * 60 + Number(z[3])) * 60;
    t -= z[1] === "+" ? off : -off;
  }
  return t;
}

/**
 * `t` (Unix seconds) for a link: ISO 8601 in UTC, `2026-11-30T03:12:05Z`, with milliseconds only when
 * the moment has them. Readable in an incident report, and what the history endpoints take.
 */
export function formatAt(t: number): string {
  const ms = Math.round(t * 1000);
  const iso = new Date(ms).toISOString(); // 2026-11-30T03:12:05.000Z
  return ms % 1000 === 0 ? `${iso.slice(0, 19)}Z` : iso;
}

/**
 * `query` with `at` set to `t` (null: removed), as a query string ("" or "?..."). The `:` of the
 * time stays as it is (legal in a query, and the link stays readable); the rest is encoded as usual.
 */
export function withAt(query: URLSearchParams, t: number | null): string {
  const q = new URLSearchParams(query);
  q.delete("at");
  const rest = q.toString();
  const at = t === null ? "" : `at=${encodeURIComponent(formatAt(t)).replace(/%3A/gi, ":")}`;
  const all = [at, rest].filter(Boolean).join("&");
  return all ? `?${all}` : "";
}

/**
 * "replay 03:12:05" in local time; with the date when the moment is not today (local), so a link
 * opened the next morning does not pass for last hour's.
 */
export function replayLabel(t: number, nowS: number): string {
  const d = new Date(t * 1000);
  const today = new Date(nowS * 1000);
  const p = (n: number) => String(n).padStart(2, "0");
  const clock = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  const sameDay = d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() &&
    d.getDate() === today.getDate();
  return sameDay ? clock : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${clock}`;
}
