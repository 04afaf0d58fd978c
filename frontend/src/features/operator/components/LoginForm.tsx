import { useState } from "preact/hooks";

/** Token login (auth modes token/oidc) and the Keycloak button when OIDC is configured. */
export function LoginForm({ reason, oidc, onToken, onOidc, onCancel }: {
  reason: string;
  oidc: boolean;
  onToken: (token: string) => void;
  onOidc: () => void;
  onCancel?: () => void;
}) {
  const [token, setToken] = useState("");
  return (
    <div class="login-wrap" role="dialog" aria-modal="true" aria-labelledby="login-title">
      <form
        class="login"
        data-testid="login"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) onToken(token.trim());
        }}
      >
        <h2 id="login-title">Log in to the operator dashboard</h2>
        <p class="muted">{reason}</p>
        {oidc && (
          <>
            <button type="button" class="btn primary" onClick={onOidc} data-testid="login-oidc">
              Log in with Keycloak
            </button>
            <div class="or">or use a token</div>
          </>
        )}
        <label>
          Access or display token
          <input
            type="password"
            autocomplete="off"
            spellcheck={false}
            value={token}
            onInput={(e) => setToken((e.target as HTMLInputElement).value)}
            data-testid="login-token"
            autofocus
          />
        </label>
        <p class="hint muted">Kept for this browser tab only (session storage); never put in a URL.</p>
        <div class="login-actions">
          {onCancel && (
            <button type="button" class="btn" onClick={onCancel}>
              Cancel
            </button>
          )}
          <button type="submit" class={`btn${oidc ? "" : " primary"}`} data-testid="login-submit">
            Connect
          </button>
        </div>
      </form>
    </div>
  );
}
