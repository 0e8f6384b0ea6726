// The providers table: one row per configured provider, grouped by level, with live health,
// breaker (and its countdown to half-open), sparklines, quota, in flight, restarts and the
// operator's actions.

import { sparkline } from "./charts.js";
import { breakerLook, el, field, fmt, healthLook, setBadge, setText } from "./dom.js";

const LAST_RESORT_KINDS = new Set(["cache", "template"]);

/** What an operator can do to a provider: label, confirmation text, and the request it makes. */
export const ACTIONS = {
  open: { label: "Force open", danger: true, describe: (p) => `Hold the breaker of ${p} open: no request goes to ${p} until it is closed or set back to auto.` },
  close: { label: "Force closed", danger: true, describe: (p) => `Hold the breaker of ${p} closed: every request may go to ${p}, and failures no longer trip it.` },
  reset: { label: "Reset", describe: (p) => `Reset the breaker of ${p}: closed, its failure counts cleared.` },
  auto: { label: "Auto", describe: (p) => `Give the breaker of ${p} back to automatic control.` },
  inject: { label: "Inject outage", danger: true, faults: true, describe: (p) => `Inject an outage into ${p}: every call to it fails with 503 until the faults are lifted.` },
  heal: { label: "Lift faults", faults: true, describe: (p) => `Lift every fault injected into ${p}.` },
};

export class ProviderTable {
  constructor(tbody, meta, onAction) {
    this.tbody = tbody;
    this.rows = new Map();
    this.halfOpenAt = new Map();
    this.build(meta, onAction);
  }

  build(meta, onAction) {
    this.tbody.replaceChildren();
    this.destroyCharts();
    const colspan = 11;
    const byLevel = new Map(meta.levels.map((level) => [level, []]));
    for (const provider of meta.providers) {
      const level = provider.level ?? "(no level)";
      if (!byLevel.has(level)) byLevel.set(level, []);
      byLevel.get(level).push(provider);
    }
    let levelIndex = 0;
    for (const [level, providers] of byLevel) {
      const index = levelIndex++;
      if (providers.length === 0) continue;
      this.tbody.append(el("tr", { class: "level-row", "data-level-row": level },
        el("th", { colspan, scope: "rowgroup" }, el("span", { class: "swatch", "data-level-index": index % 4 }), level.replaceAll("_", " "))));
      for (const provider of providers) {
        const row = this.row(provider, level, meta.actions, onAction);
        this.tbody.append(row.tr);
        this.rows.set(provider.name, row);
      }
    }
  }

  row(provider, level, actions, onAction) {
    const latencyBox = el("div", { class: "spark" });
    const errorBox = el("div", { class: "spark" });
    const models = provider.models.length ? provider.models.join(", ") : provider.kind;
    const tr = el("tr", { "data-provider": provider.name, "data-level": level },
      el("th", { scope: "row" }, el("span", { class: "provider-name" }, provider.name),
        el("span", { class: "provider-kind muted", title: models }, provider.kind)),
      el("td", {}, el("span", { class: "badge", "data-field": "status" }, "–"),
        el("span", { class: "reason muted", "data-field": "reason" })),
      el("td", {}, el("span", { class: "badge", "data-field": "breaker" }, "–"),
        el("span", { class: "countdown", "data-field": "countdown" })),
      el("td", { class: "num", "data-field": "latency" }, "–"),
      el("td", { class: "spark-cell" }, latencyBox),
      el("td", { class: "num", "data-field": "error_rate" }, "–"),
      el("td", { class: "spark-cell" }, errorBox),
      el("td", {}, el("div", { class: "meter", "data-field": "quota_bar" }, el("span")),
        el("span", { class: "meter-text", "data-field": "quota" }, "–")),
      el("td", { class: "num", "data-field": "in_flight" }, "–"),
      el("td", { class: "num", "data-field": "restarts" }, "–"),
      el("td", { class: "actions-col" }, actions ? this.menu(provider, onAction) : null),
    );
    return {
      tr,
      latency: sparkline(latencyBox, { shade: true, max: 100 }),
      errors: sparkline(errorBox, { max: 0.1 }),
    };
  }

  menu(provider, onAction) {
    const buttons = Object.entries(ACTIONS)
      .filter(([, action]) => !(action.faults && LAST_RESORT_KINDS.has(provider.kind)))
      .map(([name, action]) => {
        const button = el("button", { type: "button", "data-action": name, class: action.danger ? "danger" : null }, action.label);
        button.addEventListener("click", () => onAction(provider.name, name));
        return button;
      });
    return el("details", { class: "menu" }, el("summary", { "data-field": "actions" }, "Actions"),
      el("div", { class: "menu-items" }, ...buttons));
  }

  /** Show the newest sample's figures and the sparklines over every sample held. */
  update(samples) {
    const latest = samples[samples.length - 1];
    if (!latest) return;
    const now = performance.now() / 1000;
    for (const [name, row] of this.rows) {
      const p = latest.providers[name];
      if (!p) continue;
      const [tone, label] = healthLook(p.status);
      setBadge(field(row.tr, "status"), tone, label, p.status);
      setText(field(row.tr, "reason"), p.available ? "" : "unavailable");
      const [btone, blabel] = breakerLook(p.breaker);
      setBadge(field(row.tr, "breaker"), btone, blabel, p.breaker);
      row.tr.dataset.breaker = p.breaker;
      this.halfOpenAt.set(name, p.half_open_in_s == null ? null : now + p.half_open_in_s);
      setText(field(row.tr, "latency"), `${fmt.ms(p.latency_p50_ms)} / ${fmt.ms(p.latency_p95_ms)}`);
      setText(field(row.tr, "error_rate"), fmt.pct(p.error_rate));
      this.quota(row.tr, p.quota_remaining);
      // With max_in_flight = "auto": calls in flight / the limit learned for them.
      setText(field(row.tr, "in_flight"), p.concurrency_limit == null
        ? fmt.int(p.in_flight) : `${fmt.int(p.in_flight)} / ${fmt.int(p.concurrency_limit)}`);
      setText(field(row.tr, "restarts"), fmt.int(p.restarts));
      this.sparklines(name, row, samples);
    }
    this.tick();
  }

  quota(tr, remaining) {
    const bar = field(tr, "quota_bar");
    const share = Math.max(0, Math.min(1, remaining ?? 0));
    bar.firstChild.style.width = `${(share * 100).toFixed(1)}%`;
    bar.dataset.tone = share < 0.2 ? "bad" : share < 0.5 ? "warn" : "ok";
    setText(field(tr, "quota"), fmt.pct(remaining));
  }

  sparklines(name, row, samples) {
    const xs = [], p50 = [], p95 = [], errors = [];
    for (const sample of samples) {
      const p = sample.providers[name];
      xs.push(sample.t);
      p50.push(p ? p.latency_p50_ms : null);
      p95.push(p ? p.latency_p95_ms : null);
      errors.push(p ? p.error_rate : null);
    }
    row.latency.setData([xs, p95, p50]);
    row.errors.setData([xs, errors]);
  }

  /** The countdowns to half-open, between samples (called a few times a second). */
  tick() {
    const now = performance.now() / 1000;
    for (const [name, row] of this.rows) {
      const at = this.halfOpenAt.get(name);
      const text = at == null ? "" : `half-open in ${fmt.duration(Math.max(0, at - now))}`;
      setText(field(row.tr, "countdown"), text);
    }
  }

  destroyCharts() {
    for (const row of this.rows.values()) {
      row.latency.destroy();
      row.errors.destroy();
    }
    this.rows.clear();
  }
}
