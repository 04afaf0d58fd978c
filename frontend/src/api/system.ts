/** REST client for the gateway's system endpoints (same origin). */
import type { AuthInfo } from "./types";

interface HealthzAuth {
  mode?: string;
  oidc_issuer?: string | null;
  oidc_client_id?: string | null;
  oidc_scope?: string | null;
  issuer?: string | null;
  client_id?: string | null;
}

/**
 * Which login the gateway wants, from the `auth` object of `/healthz` (always served, no auth):
 * `mode`, and for OIDC the issuer and the public client id of the page. Without an answer the page
 * starts without a token and offers the token form if the socket is refused (4401).
 */
export async function fetchAuthInfo(): Promise<AuthInfo> {
  try {
    const res = await fetch("/healthz", { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) return { mode: "unknown" };
    const body = (await res.json()) as { auth?: HealthzAuth };
    const a = body.auth ?? {};
    const mode = a.mode;
    return {
      mode: mode === "none" || mode === "token" || mode === "oidc" ? mode : "unknown",
      issuer: a.oidc_issuer ?? a.issuer ?? null,
      client_id: a.oidc_client_id ?? a.client_id ?? null,
      scope: a.oidc_scope ?? null,
    };
  } catch {
    return { mode: "unknown" };
  }
}
