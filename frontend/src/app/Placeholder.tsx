import { useParams } from "./router";

/** Stands in for a page whose owner has not merged it yet (see routes.ts). */
export function placeholder(what: string) {
  return function Placeholder() {
    const params = useParams();
    return (
      <section class="page-placeholder" aria-labelledby="placeholder-title" data-testid="placeholder">
        <h2 id="placeholder-title">Coming</h2>
        <p>
          {what}
          {params.name ? <> for <strong>{params.name}</strong></> : null} is being built. The
          {" "}<a href="/">dashboard</a> has the live status meanwhile.
        </p>
      </section>
    );
  };
}
