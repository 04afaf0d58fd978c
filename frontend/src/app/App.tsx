/**
 * The app shell: one live connection for every page, the status line (header), navigation, login,
 * and the page of the current route. Pages come from routes.ts.
 */
import { useEffect, useMemo, useState } from "preact/hooks";
import { getStoredToken, getToken, initOidc, logout, oidcConfigured, oidcLogin, setStoredToken, tryRenew } from "../api/auth";
import { LiveClient, liveUrl } from "../api/live";
import { ReplayController } from "../api/replay";
import { fetchAuthInfo } from "../api/system";
import type { AuthInfo } from "../api/types";
import { AlertBanner } from "../features/alerts/AlertBanner";
import { Header } from "../features/operator/components/Header";
import { LoginForm } from "../features/operator/components/LoginForm";
import { STATUS_ICON } from "../features/operator/components/StatusBadge";
import { useLiveState, useNow } from "../features/operator/hooks";
import { normStatus } from "../state/live/selectors";
import { parseAt, replayLabel, withAt } from "../state/replay/at";
import { clockS, type ReplayState } from "../state/replay/reducer";
import { shownState } from "../state/replay/shown";
import { TimeBar } from "../features/replay/TimeBar";
import { LiveContext } from "./live";
import { Nav } from "./Nav";
import { interceptLinks, matchPath, navigate, ParamsContext, type Params, useLocation } from "./router";
import { type RouteDef, routes } from "./routes";

export function resolve(path: string, table: RouteDef[] = routes): { route: RouteDef; params: Params } | null {
  for (const route of table) {
    const params = matchPath(route.path, path);
    if (params) return { route, params };
  }
  return null;
}

function NotFound({ path }: { path: string }) {
  return (
    <section class="page-placeholder" aria-labelledby="nf-title" data-testid="not-found">
      <h2 id="nf-title">No such page</h2>
      <p>Nothing lives at <code>{path}</code>. The <a href="/">dashboard</a> has the live status.</p>
    </section>
  );
}

/** A valid login without the role: no page, no figures, and how to get in. */
function NotAllowed({ reason }: { reason: string }) {
  return (
    <section class="page-placeholder" aria-labelledby="na-title" data-testid="not-allowed">
      <h2 id="na-title">Not allowed</h2>
      <p>
        You are logged in, but this identity may not see the operator dashboard: it needs the role{" "}
        <code>operator</code>. Ask an administrator for it, or log out and log in as someone who has it.
      </p>
      {reason && <p class="muted">The gateway said: {reason}</p>}
    </section>
  );
}

function useReplayState(ctl: ReplayController): ReplayState {
  const [state, setState] = useState(ctl.getState());
  useEffect(() => ctl.subscribe(setState), [ctl]);
  return state;
}

/** Write the replayed moment into the URL (null: remove `at`), keeping the path and the rest. */
function writeAt(at: number | null, push: boolean): void {
  const loc = window.location;
  navigate(`${loc.pathname}${withAt(new URLSearchParams(loc.search), at)}${loc.hash}`, { replace: !push });
}

export function App() {
  const loc = useLocation();
  const wall = loc.query.get("wall") === "1";
  // During render, not in an effect: the root type size must be the wall's before the pages' charts
  // (whose effects run first) measure it.
  document.documentElement.classList.toggle("wall", wall);
  const client = useMemo(() => new LiveClient({ url: liveUrl(), getToken }), []);
  const rawLive = useLiveState(client);
  const wallNow = useNow(1000);
  const replayCtl = useMemo(() => new ReplayController(client, (w) => writeAt(w.at, w.push)), [client]);
  useEffect(() => () => replayCtl.dispose(), [replayCtl]);
  const replay = useReplayState(replayCtl);
  const [auth, setAuth] = useState<AuthInfo | null>(null);
  const [loginOpen, setLoginOpen] = useState(false);
  const [loggedIn, setLoggedIn] = useState(getStoredToken() !== null);

  const hit = resolve(loc.path);
  const params = hit?.params ?? {};
  const title = hit ? (typeof hit.route.title === "function" ? hit.route.title(params) : hit.route.title) : "Not found";
  const sec = hit?.route.sections;
  const sections = typeof sec === "function" ? sec(params) : sec;
  // Before start(): the first hello already asks for the page's sections.
  client.setSections(sections);

  // Time travel: the URL's `at` is the moment shown (pages without it, and no `at`: live).
  const timeTravel = hit?.route.timeTravel === true;
  const atRaw = timeTravel ? loc.query.get("at") : null;
  useEffect(() => {
    replayCtl.dispatch({ type: "url", at: parseAt(atRaw, Date.now() / 1000), now: Date.now() });
  }, [atRaw, replayCtl]);
  // A link to another page keeps the moment while replaying (unless it names its own).
  useEffect(() => interceptLinks((path) => resolve(path) !== null, document, (url) => {
    const clock = clockS(replayCtl.getState(), Date.now());
    const target = resolve(url.pathname);
    const keep = clock !== null && target?.route.timeTravel === true && !url.searchParams.has("at");
    return `${url.pathname}${keep ? withAt(url.searchParams, clock) : url.search}${url.hash}`;
  }), [replayCtl]);
  // While replaying the pages get the replayed view and the replay clock (state/replay/shown.ts).
  const shown = shownState(rawLive, replay, wallNow);
  const live = shown.live;
  const now = shown.now;
  const replayText = shown.clockS === null ? null : replayLabel(shown.clockS, wallNow / 1000);


  useEffect(() => {
    let cancelled = false;
    void (async () => {
      const info = await fetchAuthInfo();
      await initOidc(info, () => client.renewToken()).catch(() => undefined);
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
    document.title = `${replayText ? `↺ replay ${replayText} · ` : ""}${STATUS_ICON[overall]} ${overall} · ${title} · opsdash`;
  }, [overall, title, replayText]);

  const needLogin = rawLive.phase === "unauthorized";
  // A wall screen whose token ran out (provider unreachable for a while, machine asleep) gets back by
  // itself while its refresh token is good: try every 5 s, the login form shows meanwhile.
  useEffect(() => {
    if (!needLogin || !oidcConfigured()) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const attempt = async () => {
      if (stopped) return;
      if (await tryRenew()) return; // userLoaded -> client.renewToken() -> reconnect
      if (!stopped) timer = setTimeout(() => void attempt(), 5000);
    };
    void attempt();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [needLogin]);
  const showLogin = needLogin || loginOpen;
  const wallHref = `${loc.path}?${new URLSearchParams([...loc.query, ["wall", "1"]]).toString()}`;
  const controls = (
    <>
      <a class="btn wall-link" href={wallHref} title="Full-screen, large type, for a wall display">Wall mode</a>
      {loggedIn ? (
        <button
          class="btn"
          type="button"
          onClick={() => void logout(() => { setLoggedIn(false); client.reconnectNow(); })}
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
  const Page = hit?.route.component;

  return (
    <LiveContext.Provider value={{ live, now, client, wall, replayAt: shown.clockS }}>
      <div
        class={`app${wall ? " wall" : ""}`}
        data-testid="app"
        data-phase={rawLive.phase}
        data-seq={live.seq ?? ""}
        data-replay={replay.phase}
        data-route={hit?.route.path ?? ""}
      >
        <a class="skip" href="#main">Skip to content</a>
        <Header live={live} now={now} wallNow={wallNow} replay={replayText === null ? null : replay} wall={wall} title={title} controls={controls} />
        {timeTravel && <TimeBar ctl={replayCtl} replay={replay} clock={shown.clockS} wall={wall} />}
        {/* firing alerts right under the status line, before the nav: first thing seen on a phone */}
        <AlertBanner />
        {!wall && <Nav path={loc.path} />}
        {live.phase === "forbidden" && (
          <div class="banner bad" role="alert">✖ This identity may not see the operator view (role “operator” required).</div>
        )}
        {view === null && replay.phase === "off" && live.phase !== "unauthorized" && live.phase !== "forbidden" && (
          <div class="banner" role="status" data-testid="waiting">
            ◌ Waiting for the first view from the gateway… every figure stays “unknown” until it arrives.
          </div>
        )}
        <main id="main" class="page" tabIndex={-1}>
          {live.phase === "forbidden" ? (
            <NotAllowed reason={live.lastError?.message || live.lastClose?.reason || ""} />
          ) : (
            <ParamsContext.Provider value={params}>
              {/* keyed by wall mode too: charts are built for the type size of the mode */}
              {Page ? <Page key={`${hit?.route.path}:${wall}`} /> : <NotFound path={loc.path} />}
            </ParamsContext.Provider>
          )}
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
    </LiveContext.Provider>
  );
}
