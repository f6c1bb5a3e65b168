// Small DOM helpers: elements from tags, attributes and children; no framework.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren(...children.flat().filter((c): c is Node | string => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))));
}

/** A table with a header row. */
export function table(headers: string[], rows: (Child | Child[])[][], attrs: Attrs = {}): HTMLTableElement {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

/** A label and its input, the label naming what the value means. */
export function labelled(text: string, input: HTMLElement, hint?: string): HTMLLabelElement {
  return h("label", {}, h("span", { class: "label" }, text), input, hint ? h("small", {}, hint) : null);
}

/** A message box: `info`, `ok`, `error` or `busy`. */
export function note(kind: "info" | "ok" | "error" | "busy", text: string, testid?: string): HTMLElement {
  return h("p", { class: `note ${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": testid }, text);
}

/** A bar chart over time: `points` are (unix seconds, value); drawn as SVG with labelled axes. */
export function chart(title: string, points: { t: number; v: number }[], unit: string): HTMLElement {
  const W = 640;
  const H = 200;
  const pad = { l: 92, r: 12, t: 12, b: 36 };
  const figure = h("figure", { class: "chart", "data-testid": "usage-chart" }, h("figcaption", {}, title));
  if (points.length === 0) {
    figure.append(h("p", { class: "muted" }, "No usage reported yet: the provider reports every few minutes."));
    return figure;
  }
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const max = Math.max(...points.map((p) => p.v), 1e-12);
  const t0 = Math.min(...points.map((p) => p.t));
  const t1 = Math.max(...points.map((p) => p.t));
  const span = Math.max(t1 - t0, 1);
  const x = (t: number) => pad.l + ((t - t0) / span) * (W - pad.l - pad.r - 12);
  const y = (v: number) => H - pad.b - (v / max) * (H - pad.t - pad.b);
  const add = (tag: string, attrs: Record<string, string | number>, text?: string) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    svg.append(el);
  };
  add("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis" });
  add("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis" });
  add("text", { x: pad.l - 6, y: pad.t + 10, "text-anchor": "end", class: "tick" }, String(Number(max.toPrecision(3))));
  add("text", { x: pad.l - 6, y: H - pad.b, "text-anchor": "end", class: "tick" }, "0");
  add("text", { x: 4, y: H / 2, class: "tick" }, unit);
  const time = (t: number) => new Date(t * 1000).toLocaleTimeString();
  add("text", { x: pad.l, y: H - 12, class: "tick" }, time(t0));
  add("text", { x: W - pad.r, y: H - 12, "text-anchor": "end", class: "tick" }, time(t1));
  const bar = Math.max(4, Math.min(24, (W - pad.l - pad.r) / points.length - 2));
  for (const p of points) {
    add("rect", { x: x(p.t), y: y(p.v), width: bar, height: H - pad.b - y(p.v), class: "bar" });
  }
  figure.append(svg);
  return figure;
}

/** A short address: 0x1234…abcd. */
export const short = (a: string) => (a.length > 12 ? `${a.slice(0, 6)}…${a.slice(-4)}` : a);
