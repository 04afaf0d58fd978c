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
type UserT = import("oidc-client-ts").User;
let manager: UserManagerT | null = null;
let renewTimer: ReturnType<typeof setTimeout> | null = null;

/**
 * When to renew a token that has `left` seconds to live: at three quarters of that. oidc-client-ts'
 * own timer renews a fixed 60 s before expiry, which renews a token of 60 s or less again and again;
 * at 3/4 a 5-minute Keycloak token is renewed after 3.75 min and a 10 s token after 7.5 s.
 */
export function renewDelayMs(left: number): number {
  return Math.max(1, left * 0.75) * 1000;
}

/** After a failed renewal: try again soon, but well before the token runs out. */
export function retryDelayMs(left: number, attempt: number): number | null {
  if (left <= 1) return null;
  return Math.min(2000 * 2 ** attempt, (left / 2) * 1000);
}

function scheduleRenew(user: UserT, onToken: () => void, attempt = 0, delay?: number): void {
  if (renewTimer) clearTimeout(renewTimer);
  renewTimer = null;
  const left = user.expires_in;
  if (left === undefined || !user.refresh_token) return;
  renewTimer = setTimeout(() => {
    renewTimer = null;
    void renew(onToken, attempt);
  }, delay ?? renewDelayMs(left));
}

async function renew(onToken: () => void, attempt: number): Promise<void> {
  if (!manager) return;
  try {
    // with a refresh token this is a refresh_token grant (no iframe); userLoaded fires on success
    await manager.signinSilent();
  } catch {
    const user = await manager.getUser();
    const retry = user ? retryDelayMs(user.expires_in ?? 0, attempt) : null;
    // when the token runs out the gateway closes the socket and the page asks for a login
    if (user && retry !== null) scheduleRenew(user, onToken, attempt + 1, retry);
  }
}

/**
 * Set up OIDC (loaded only when the gateway says `oidc`); completes a login redirect if one is back.
 * `onToken` runs whenever a new token is there (login, renewal): the live connection sends it to the
 * gateway on the open socket, so a wall screen stays connected across renewals.
 */
export async function initOidc(info: AuthInfo, onToken: () => void): Promise<void> {
  if (info.mode !== "oidc" || !info.issuer || !info.client_id) return;
  const { UserManager, WebStorageStateStore } = await import("oidc-client-ts");
  const redirect = `${window.location.origin}${window.location.pathname}`;
  manager = new UserManager({
    authority: info.issuer,
    client_id: info.client_id,
    redirect_uri: redirect,
    post_logout_redirect_uri: `${window.location.origin}/`,
    response_type: "code",
    scope: info.scope ?? "openid",
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
    // renewal is ours (scheduleRenew): at 3/4 of the lifetime, with retries
    automaticSilentRenew: false,
    // logging out revokes the refresh token at the provider (logout() below)
    revokeTokenTypes: ["refresh_token"],
  });
  manager.events.addUserLoaded((user) => {
    scheduleRenew(user, onToken);
    onToken();
  });
  manager.events.addUserUnloaded(() => {
    if (renewTimer) clearTimeout(renewTimer);
    renewTimer = null;
  });
  const params = new URLSearchParams(window.location.search);
  if (params.has("code") && params.has("state")) {
    try {
      const user = await manager.signinRedirectCallback();
      const back = typeof user.state === "string" ? user.state : "";
      window.history.replaceState(null, "", `${window.location.pathname}${back}`);
    } catch {
      window.history.replaceState(null, "", window.location.pathname);
    }
  } else {
    // a reload keeps the session's user: renew it on time (now, if it already ran out)
    const user = await manager.getUser();
    if (user) scheduleRenew(user, onToken, 0, user.expired ? 0 : undefined);
  }
}

/**
 * After the gateway refused the socket (4401: e.g. the token ran out while the provider could not be
 * reached, or the machine slept): renew with the refresh token if there is one. True when a new
 * token came (the live connection then reconnects through `onToken`).
 */
export async function tryRenew(): Promise<boolean> {
  if (!manager) return false;
  const user = await manager.getUser();
  if (!user?.refresh_token) return false;
  try {
    await manager.signinSilent();
    return true;
  } catch {
    return false;
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

/**
 * Log out: forget the tokens, let `endSocket` close the live connection at once (the gateway then
 * sees no token), and with OIDC end the session at the provider (its end-session endpoint; the
 * refresh token is revoked first), which returns to the dashboard.
 */
export async function logout(endSocket: () => void = () => undefined): Promise<void> {
  setStoredToken(null);
  if (renewTimer) clearTimeout(renewTimer);
  renewTimer = null;
  const user = manager ? await manager.getUser() : null;
  if (manager && user?.refresh_token) {
    // a shared wall screen stays logged out: the refresh token dies at the provider too
    await manager.revokeTokens(["refresh_token"]).catch(() => undefined);
  }
  if (manager) await manager.removeUser();
  endSocket();
  if (manager && user) {
    try {
      await manager.signoutRedirect({ id_token_hint: user.id_token });
    } catch {
      /* the provider is unreachable: the local logout above stands */
    }
  }
}

export async function hasLogin(): Promise<boolean> {
  return (await getToken()) !== null;
}
