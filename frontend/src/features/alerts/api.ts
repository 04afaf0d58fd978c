/** Writes of the alerts page: ack, silence, end a silence (operators only; docs/alerts.md). */
import { getToken } from "../../api/auth";

export class WriteError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function send(method: "POST" | "DELETE", url: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = await getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = (await res.json().catch(() => ({}))) as { message?: string };
  if (!res.ok) {
    const why = res.status === 403 ? "not allowed with this token (operators only)" : data.message ?? `HTTP ${res.status}`;
    throw new WriteError(res.status, why);
  }
  return data;
}

export function ackAlert(fingerprint: string): Promise<unknown> {
  return send("POST", `/operator/system/alerts/${encodeURIComponent(fingerprint)}/ack`);
}

export function createSilence(matchers: Record<string, string>, durationS: number, comment: string): Promise<unknown> {
  return send("POST", "/operator/system/silences", { matchers, duration_s: durationS, comment });
}

export function expireSilence(id: string): Promise<unknown> {
  return send("DELETE", `/operator/system/silences/${encodeURIComponent(id)}`);
}
