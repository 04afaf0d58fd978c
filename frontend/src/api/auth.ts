/**
 * Login: a bearer token typed in (auth mode `token`, including read-only display tokens for wall
 * screens), or Keycloak through OIDC authorization code + PKCE (mode `oidc`, oidc-client-ts).
 * Tokens live in sessionStorage (or memory when storage is refused) and never go into a URL.
 */
import type { AuthInfo } from "./types";

const TOKEN_KEY = "opsdash.token";
let memoryToken: string | null = null;

function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

export function getStoredToken(): string | null {
  try {
    return storage()?.getItem(TOKEN_KEY) ?? memoryToken;
  } catch {
    return memoryToken;
  }
}

export function setStoredToken(token: string | null): void {
  memoryToken = token;
  try {
    if (token) storage()?.setItem(TOKEN_KEY, token);
    else storage()?.removeItem(TOKEN_KEY);
  } catch {
    /* memory only */
  }
}

type UserManagerT = import("oidc-client-ts").UserManager;
let manager: UserManagerT | null = null;

/** Set up OIDC (loaded only when the gateway says `oidc`); completes a login redirect if one is back. */
export async function initOidc(info: AuthInfo, onToken: () => void): Promise<void> {
  if (info.mode !== "oidc" || !info.issuer || !info.client_id) return;
  const { UserManager, WebStorageStateStore } = await import("oidc-client-ts");
  const redirect = `${window.location.origin}${window.location.pathname}`;
  manager = new UserManager({
    authority: info.issuer,
    client_id: info.client_id,
    redirect_uri: redirect,
    post_logout_redirect_uri: redirect,
    response_type: "code",
    scope: info.scope ?? "openid",
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
    automaticSilentRenew: true,
  });
  manager.events.addUserLoaded(() => onToken());
  const params = new URLSearchParams(window.location.search);
  if (params.has("code") && params.has("state")) {
    try {
      const user = await manager.signinRedirectCallback();
      const back = typeof user.state === "string" ? user.state : "";
      window.history.replaceState(null, "", `${window.location.pathname}${back}`);
    } catch {
      window.history.replaceState(null, "", window.location.pathname);
    }
  }
}

export function oidcConfigured(): boolean {
  return manager !== null;
}

/** Start the Keycloak login; the search part (e.g. `?wall=1`) is restored after the redirect. */
export async function oidcLogin(): Promise<void> {
  await manager?.signinRedirect({ state: window.location.search });
}

export async function getToken(): Promise<string | null> {
  if (manager) {
    const user = await manager.getUser();
    if (user && !user.expired) return user.access_token;
  }
  return getStoredToken();
}

export async function logout(): Promise<void> {
  setStoredToken(null);
  if (manager) await manager.removeUser();
}

export async function hasLogin(): Promise<boolean> {
  return (await getToken()) !== null;
}
