// Layout checks run in the page by tests/browser/test_layouts.py. Returns plain JSON.
(names) => {
  const vw = window.innerWidth, vh = window.innerHeight;
  const doc = document.documentElement;
  const out = {vw, vh, scrollWidth: doc.scrollWidth, scrollHeight: doc.scrollHeight,
               wide: [], clipped: [], overlaps: [], cut: [], texts: 0};
  const visible = (el) => {
    for (let e = el; e && e !== document.body; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.display === "none" || cs.visibility === "hidden" || parseFloat(cs.opacity) === 0) return false;
    }
    return true;
  };
  // the part of `r` not clipped away by ancestors that hide their overflow
  const clip = (el, r) => {
    let {left, top, right, bottom} = r;
    for (let e = el; e && e !== doc; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.overflowX !== "visible" || cs.overflowY !== "visible") {
        const c = e.getBoundingClientRect();
        if (cs.overflowX !== "visible") { left = Math.max(left, c.left); right = Math.min(right, c.right); }
        if (cs.overflowY !== "visible") { top = Math.max(top, c.top); bottom = Math.min(bottom, c.bottom); }
      }
    }
    return {left, top, right, bottom};
  };
  // elements wider than the viewport or reaching past its right edge
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > vw + 1 && clip(el, r).right > vw + 1) {
      out.wide.push(`${el.tagName.toLowerCase()}.${el.className} right=${Math.round(r.right)}`);
    }
  }
  out.wide = out.wide.slice(0, 10);
  // the component names: whole, not cut or ellipsized
  for (const id of names) {
    const h = document.querySelector(`[data-testid="comp-${id}"] .comp-name`);
    if (!h || !visible(h)) { out.clipped.push(`${id}: not shown`); continue; }
    const r = h.getBoundingClientRect();
    const c = clip(h, r);
    if (h.scrollWidth > h.clientWidth + 0.5 || c.right < r.right - 0.5 || c.left > r.left + 0.5 || r.right > vw) {
      out.clipped.push(`${id}: scroll ${h.scrollWidth} > client ${h.clientWidth}, box ${Math.round(r.left)}-${Math.round(r.right)}`);
    }
  }
  // every visible text run, as tight boxes (a Range per text node, one rect per line)
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const el = n.parentElement;
    if (!el || !visible(el) || el.closest("script,style,noscript")) continue;
    const range = document.createRange();
    range.selectNodeContents(n);
    for (const r of range.getClientRects()) {
      const c = clip(el, r);
      if (c.right - c.left < 1 || c.bottom - c.top < 1) continue;
      if (c.right <= 0 || c.left >= vw) continue;
      // a line cut across by a box that hides its overflow (half a line readable), or by the screen
      if ((c.top > r.top + 2 || c.bottom < r.bottom - 2 || r.bottom > vh + 2) && out.cut.length < 10) {
        out.cut.push(`"${n.textContent.trim().slice(0, 30)}" ${Math.round(r.top)}-${Math.round(r.bottom)} shown ${Math.round(c.top)}-${Math.round(c.bottom)}`);
      }
      boxes.push({c, el, n, text: n.textContent.trim().slice(0, 30)});
    }
  }
  out.texts = boxes.length;
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 3; e = e.parentElement) {
      parts.unshift(e.dataset?.testid || `${e.tagName.toLowerCase()}${e.className ? "." + String(e.className).split(" ")[0] : ""}`);
    }
    return parts.join(">");
  };
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      if (boxes[i].n === boxes[j].n) continue; // fragments of one text run
      const a = boxes[i].c, b = boxes[j].c;
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      // glyph boxes of adjacent lines may touch; a real overlap is more than 2 px both ways
      if (w > 2 && h > 2) {
        out.overlaps.push(`"${boxes[i].text}" (${path(boxes[i].el)}) × "${boxes[j].text}" (${path(boxes[j].el)})`);
        if (out.overlaps.length >= 10) return out;
      }
    }
  }
  return out;
}
