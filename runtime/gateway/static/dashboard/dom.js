// DOM helpers and number formats. Everything shown goes in as text (textContent or
// setAttribute), never as HTML, so no field the server sends can become markup.

/** An element with attributes (`class`, `data-*`, ...) and children (nodes or strings). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Set an element's text only when it changed (keeps layout work down at one update a second). */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function byId(id) {
  return document.getElementById(id);
}

export function field(root, name) {
  return root.querySelector(`[data-field="${name}"]`);
}

const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export const fmt = {
  num: (v) => (v === null || v === undefined ? "–" : nf1.format(v)),
  int: (v) => (v === null || v === undefined ? "–" : nf0.format(v)),
  ms(v) {
    if (v === null || v === undefined) return "–";
    return v >= 10000 ? `${nf1.format(v / 1000)} s` : `${nf0.format(v)} ms`;
  },
  /** Three latencies sharing one unit: "120 / 300 / 420 ms". */
  msTriple(...values) {
    if (values.some((v) => v === null || v === undefined)) return values.map(fmt.ms).join(" / ");
    const seconds = values.some((v) => v >= 10000);
    const shown = values.map((v) => (seconds ? nf1.format(v / 1000) : nf0.format(v)));
    return `${shown.join(" / ")} ${seconds ? "s" : "ms"}`;
  },
  pct: (v) => (v === null || v === undefined ? "–" : `${nf1.format(v * 100)} %`),
  usd(v) {
    if (v === null || v === undefined) return "–";
    if (v !== 0 && Math.abs(v) < 0.01) return `$${v.toFixed(4)}`;
    return `$${v.toFixed(2)}`;
  },
  duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  },
  clock: (t) => new Date(t * 1000).toLocaleTimeString(undefined, { hour12: false }),
};

// Health and breaker states: a tone for colour, and a label and symbol that read without it.
const HEALTH = {
  healthy: ["ok", "✓ healthy"],
  degraded: ["warn", "▲ degraded"],
  critical: ["bad", "✖ critical"],
  offline: ["bad", "✖ offline"],
};
const BREAKER = {
  closed: ["ok", "closed"],
  half_open: ["warn", "◐ half-open"],
  open: ["bad", "● OPEN"],
  forced_open: ["bad", "● FORCED OPEN"],
  forced_closed: ["warn", "○ forced closed"],
  disabled: ["muted", "disabled"],
};

export function healthLook(status) {
  return HEALTH[status] || ["muted", status || "unknown"];
}

export function breakerLook(state) {
  return BREAKER[state] || ["muted", (state || "unknown").replaceAll("_", " ")];
}

/** A tone and label on a `.badge`, plus `data-state` for tests and styles. */
export function setBadge(node, tone, label, state) {
  if (node.dataset.tone !== tone) node.dataset.tone = tone;
  if (state !== undefined && node.dataset.state !== state) node.dataset.state = state;
  setText(node, label);
}
