import { matchPath } from "./router";
import { routes } from "./routes";

/** The pages, as plain links (the router intercepts them); the current one marked for all readers. */
export function Nav({ path }: { path: string }) {
  return (
    <nav class="nav" aria-label="Pages" data-testid="nav">
      <ul>
        {routes.filter((r) => r.nav).map((r) => {
          const here = matchPath(r.path, path) !== null;
          return (
            <li key={r.path}>
              <a href={r.path} aria-current={here ? "page" : undefined} class={here ? "here" : undefined}>
                {r.nav}
              </a>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
