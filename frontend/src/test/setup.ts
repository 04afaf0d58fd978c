// happy-dom has no 2D canvas context and no Path2D; uPlot needs both (and matchMedia at import).
// Real pixels are checked in the browser tests (tests/browser/), not here.
const g = globalThis as unknown as Record<string, unknown>;

if (typeof g.matchMedia !== "function") {
  g.matchMedia = () => ({ matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} });
}

if (typeof g.Path2D !== "function") {
  g.Path2D = class {
    moveTo() {}
    lineTo() {}
    rect() {}
    arc() {}
    closePath() {}
    bezierCurveTo() {}
    addPath() {}
  };
}

const ctxStub = new Proxy(
  {},
  {
    get(_t, prop) {
      if (prop === "measureText") return () => ({ width: 10 });
      if (prop === "canvas") return undefined;
      return () => undefined;
    },
    set() {
      return true;
    },
  },
);
(HTMLCanvasElement.prototype as unknown as { getContext: () => unknown }).getContext = () => ctxStub;
