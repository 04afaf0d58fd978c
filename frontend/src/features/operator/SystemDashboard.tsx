import { useEffect, useMemo, useState } from "preact/hooks";
import { getStoredToken, getToken, initOidc, logout, oidcConfigured, oidcLogin, setStoredToken } from "../../api/auth";
import { LiveClient, liveUrl } from "../../api/live";
import { fetchAuthInfo } from "../../api/system";
import type { AuthInfo, View } from "../../api/types";
import type { LiveState } from "../../state/live/reducer";
import { normStatus, probeStaleAfterS, sourceAgeS, tileAge, type TileAge } from "../../state/live/selectors";
import { CapacityGauges } from "./components/CapacityGauges";
import { ErrorFeed } from "./components/ErrorFeed";
import { Header } from "./components/Header";
import { LoginForm } from "./components/LoginForm";
import { PlatformTotals } from "./components/PlatformTotals";
import { ServiceHealthGrid } from "./components/ServiceHealthGrid";
import { STATUS_ICON } from "./components/StatusBadge";
import { ThroughputChart } from "./components/ThroughputChart";
import { Tile } from "./components/Tile";
import { useLiveState, useNow } from "./hooks";

/** The capacity panel is as old as its oldest source, and stale when any source is. */
function capacityAge(view: View | null, live: LiveState, now: number): TileAge {
  const cap = view?.capacity;
  const parts = [
    tileAge(sourceAgeS(view, cap?.disk), probeStaleAfterS(view?.probes?.disk), live, now),
    tileAge(sourceAgeS(view, cap?.postgres), probeStaleAfterS(view?.probes?.postgres), live, now),
    tileAge(sourceAgeS(view, cap?.influxdb), probeStaleAfterS(view?.probes?.influxdb), live, now),
  ];
  const ages = parts.map((p) => p.ageS).filter((a): a is number => a !== null);
  return { ageS: ages.length ? Math.max(...ages) : null, stale: parts.some((p) => p.stale) };
}

export function SystemDashboard({ wall }: { wall: boolean }) {
  const client = useMemo(() => new LiveClient({ url: liveUrl(), getToken }), []);
  const live = useLiveState(client);
  const now = useNow(1000);
  const [auth, setAuth] = useState<AuthInfo | null>(null);
  const [loginOpen, setLoginOpen] = useState(false);
  const [loggedIn, setLoggedIn] = useState(getStoredToken() !== null);

  useEffect(() => {
    let cancelled = false;
    void (async () => {
      const info = await fetchAuthInfo();
      await initOidc(info, () => client.reconnectNow()).catch(() => undefined);
      if (cancelled) return;
      setAuth(info);
      setLoggedIn((await getToken()) !== null);
      client.start();
    })();
    return () => {
      cancelled = true;
      client.stop();
    };
  }, [client]);

  const view = live.view;
  const overall = view ? normStatus(view.health?.status) : "unknown";
  useEffect(() => {
    document.title = `${STATUS_ICON[overall]} ${overall} · opsdash`;
  }, [overall]);

  const viewAge = tileAge(undefined, Infinity, live, now);
  const capAge = capacityAge(view, live, now);
  const aggAge = tileAge(sourceAgeS(view, view?.aggregates), probeStaleAfterS(view?.probes?.platform), live, now);
  const windowS = (view?.meta?.series_len ?? 900) * (view?.meta?.tick_s ?? 1);
  const needLogin = live.phase === "unauthorized";
  const showLogin = needLogin || loginOpen;

  const controls = (
    <>
      <a class="btn" href="?wall=1" title="Full-screen, large type, for a wall display">Wall mode</a>
      {loggedIn ? (
        <button
          class="btn"
          type="button"
          onClick={() => void logout().then(() => { setLoggedIn(false); client.reconnectNow(); })}
        >
          Log out
        </button>
      ) : (
        auth?.mode !== "none" && (
          <button class="btn" type="button" onClick={() => setLoginOpen(true)}>Log in</button>
        )
      )}
    </>
  );

  return (
    <div class={`app${wall ? " wall" : ""}`} data-testid="app" data-phase={live.phase} data-seq={live.seq ?? ""}>
      <Header live={live} now={now} wall={wall} controls={controls} />
      {live.phase === "forbidden" && (
        <div class="banner bad" role="alert">⛔ This identity may not see the operator view (role “operator” required).</div>
      )}
      {view === null && live.phase !== "unauthorized" && live.phase !== "forbidden" && (
        <div class="banner" role="status" data-testid="waiting">
          ◌ Waiting for the first view from the gateway… every figure stays “unknown” until it arrives.
        </div>
      )}
      <main class="grid">
        <section class="area-health" aria-label="Service health">
          <h2 class="area-title">Service health</h2>
          <ServiceHealthGrid live={live} now={now} />
        </section>
        <Tile title="Throughput · last 15 min" ageS={viewAge.ageS} stale={viewAge.stale} class="area-tp" testId="tile-throughput">
          <ThroughputChart view={view} windowS={windowS} />
        </Tile>
        <Tile title="Capacity" ageS={capAge.ageS} stale={capAge.stale} class="area-cap" testId="tile-capacity">
          <CapacityGauges view={view} />
        </Tile>
        <Tile title="Platform totals" ageS={aggAge.ageS} stale={aggAge.stale} class="area-tot" testId="tile-totals">
          <PlatformTotals view={view} />
        </Tile>
        <Tile title="Recent errors" ageS={viewAge.ageS} stale={viewAge.stale} class="area-err" testId="tile-errors">
          <ErrorFeed view={view} limit={wall ? 8 : 12} />
        </Tile>
      </main>
      {showLogin && (
        <LoginForm
          reason={needLogin
            ? `The gateway refused the connection (${live.lastError?.message || live.lastClose?.reason || "unauthorized"}).`
            : "Give a token to connect with it."}
          oidc={auth?.mode === "oidc" && oidcConfigured()}
          onToken={(token) => {
            setStoredToken(token);
            setLoggedIn(true);
            setLoginOpen(false);
            client.reconnectNow();
          }}
          onOidc={() => void oidcLogin()}
          onCancel={needLogin ? undefined : () => setLoginOpen(false)}
        />
      )}
    </div>
  );
}
