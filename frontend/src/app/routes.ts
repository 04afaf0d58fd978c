/**
 * The route table: every page of the app, in navigation order. The gateway serves index.html for
 * exactly these paths (docs/gateway.md), so keep the two in step when adding one.
 *
 * A page is a component with no props; it reads the live view with useLive() (app/live.ts) and its
 * params with useParams() (app/router.ts). The shell renders the page title as the one <h1>: pages
 * start at <h2>. `sections` is what the page needs from the WebSocket (omit it for the default
 * stream); the shell asks the gateway for it with a new hello on the same connection.
 */
import type { ComponentType } from "preact";
import { AlertsPage } from "../features/alerts/AlertsPage";
import { HistoryPage } from "../features/history/HistoryPage";
import { ComponentPage, componentSections } from "../features/component/ComponentPage";
import { GRAPH_SECTIONS } from "../features/graph/model";
import { LogsPage } from "../features/logs/LogsPage";
import { Dashboard } from "../features/operator/Dashboard";
import { lazyPage } from "./lazy";
import type { Params } from "./router";

export interface RouteDef {
  /** "/component/:name"; a trailing "/*" matches deeper paths too (useParams()["*"]). */
  path: string;
  /** The page's <h1> and document title. */
  title: string | ((p: Params) => string);
  /** The label in the navigation; routes without one are reached by links (a component's page). */
  nav?: string;
  component: ComponentType;
  /** The view sections this page needs; omitted: the default stream. */
  sections?: string[] | ((p: Params) => string[]);
  /**
   * Time travel (`?at=`, the time bar): the page shows the view of any recorded moment. Off for the
   * pages with their own time range (history, logs: there `at` is the event to highlight).
   */
  timeTravel?: boolean;
}

// The graph page brings its layout library (dagre, ~20 kB gzip): loaded when opened.
const GraphPage = lazyPage(() => import("../features/graph/GraphPage"));

export const routes: RouteDef[] = [
  { path: "/", title: "System status", nav: "Status", component: Dashboard, timeTravel: true },
  { path: "/history", title: "History", nav: "History", component: HistoryPage },
  { path: "/logs", title: "Logs", nav: "Logs", component: LogsPage },
  { path: "/graph", title: "Dependency graph", nav: "Graph", component: GraphPage, sections: GRAPH_SECTIONS, timeTravel: true },
  { path: "/alerts", title: "Alerts", nav: "Alerts", component: AlertsPage, timeTravel: true },
  {
    path: "/component/:name",
    title: (p) => p.name ?? "Component",
    component: ComponentPage,
    sections: (p) => componentSections(p.name),
    timeTravel: true,
  },
];
