/** REST client for the gateway's system endpoints (same origin). */
import type { AuthInfo, View } from "./types";

export type Section = "health" | "metrics" | "capacity" | "aggregates" | "errors";

export class HttpError extends Error {
  constructor(readonly status: number, url: string) {
    super(`GET ${url}: HTTP ${status}`);
  }
}

async function getJson<T>(url: string, token: string | null): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, { headers, credentials: "same-origin" });
  if (!res.ok) throw new HttpError(res.status, url);
  return (await res.json()) as T;
}

export function fetchSection<S extends Section>(name: S, token: string | null): Promise<NonNullable<View[S]>> {
  return getJson(`/operator/system/${name}`, token);
}

export function fetchSeries(names: string[], token: string | null): Promise<NonNullable<View["series"]>> {
  return getJson(`/operator/system/series?names=${encodeURIComponent(names.join(","))}`, token);
}

/**
 * Which login the gateway wants. A gateway without the endpoint answers 404: the page then starts
 * without a token and offers the token form if the socket is refused (4401).
 */
export async function fetchAuthInfo(): Promise<AuthInfo> {
  try {
    const res = await fetch("/operator/system/auth", { headers: { Accept: "application/json" } });
    if (!res.ok) return { mode: "unknown" };
    const body = (await res.json()) as Partial<AuthInfo> & { auth?: string; oidc?: Partial<AuthInfo> };
    const mode = body.mode ?? body.auth;
    const oidc = body.oidc ?? {};
    return {
      mode: mode === "none" || mode === "token" || mode === "oidc" ? mode : "unknown",
      issuer: body.issuer ?? oidc.issuer ?? null,
      client_id: body.client_id ?? oidc.client_id ?? null,
      scope: body.scope ?? oidc.scope ?? null,
    };
  } catch {
    return { mode: "unknown" };
  }
}
