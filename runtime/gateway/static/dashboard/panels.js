// The panels around the providers table: summary figures, traffic by level, cost, alerts and
// recommendations, and the event log.

import { fitWidth, lines, stackedLevels } from "./charts.js";
import { byId, el, field, fmt, setText } from "./dom.js";

export const MAX_EVENTS = 200;
/** Seconds of samples the level share and the short-term figures are over. */
const SHARE_WINDOW = 10;
const RATE_WINDOW = 60;

function recent(samples, count) {
  return samples.slice(Math.max(0, samples.length - count));
}

function sum(samples, pick) {
  return samples.reduce((total, s) => total + (pick(s) || 0), 0);
}

// -- traffic -------------------------------------------------------------------------------

export class Traffic {
  constructor(levels, intervalS) {
    this.levels = levels;
    this.intervalS = intervalS || 1;
    this.observers = [];
    this.buildShare();
    this.buildCharts();
  }

  buildShare() {
    const box = byId("level-share");
    const bar = el("div", { class: "share-bar", role: "img", "aria-label": "share per level" });
    const legend = el("ul", { class: "share-legend" });
    this.levels.forEach((level, index) => {
      bar.append(el("span", { "data-level": level, "data-level-index": index % 4 }));
      legend.append(el("li", { "data-level": level },
        el("span", { class: "swatch", "data-level-index": index % 4 }),
        el("span", { class: "share-name" }, level.replaceAll("_", " ")),
        el("strong", { "data-field": "share", "data-share": "0" }, "–")));
    });
    legend.append(el("li", { class: "muted", "data-field": "share-window" }, `last ${SHARE_WINDOW} s`));
    box.replaceChildren(bar, legend);
    this.shareBar = bar;
    this.shareLegend = legend;
  }

  destroy() {
    for (const observer of this.observers) observer.disconnect();
    for (const chart of [this.stacked, this.latency, this.outcomes]) chart?.destroy();
  }

  buildCharts() {
    this.destroy();
    const levelsBox = byId("chart-levels"), latencyBox = byId("chart-latency"), outcomesBox = byId("chart-outcomes");
    levelsBox.replaceChildren(); latencyBox.replaceChildren(); outcomesBox.replaceChildren();
    this.stacked = stackedLevels(levelsBox, this.levels, 170);
    this.latency = lines(latencyBox, [
      { label: "p50", colour: "--accent" },
      { label: "p95", colour: "--warn" },
      { label: "p99", colour: "--bad", dash: [4, 3] },
    ], { height: 140, format: (v) => fmt.ms(v) });
    this.outcomes = lines(outcomesBox, [
      { label: "fallbacks", colour: "--warn", bars: true, fill: "--warn-soft" },
      { label: "errors", colour: "--bad", bars: true, fill: "--bad-soft" },
    ], { height: 140, format: (v) => fmt.int(v) });
    this.observers = [fitWidth(this.stacked, levelsBox), fitWidth(this.latency, latencyBox), fitWidth(this.outcomes, outcomesBox)];
  }

  update(samples) {
    const xs = samples.map((s) => s.t);
    const running = new Array(samples.length).fill(0);
    const stacked = this.levels.map((level) => samples.map((s, i) => {
      running[i] += (s.traffic.by_level[level] || 0) / this.intervalS;
      return running[i];
    }));
    this.stacked.setData([xs, ...stacked]);
    this.latency.setData([xs, samples.map((s) => s.traffic.p50_ms), samples.map((s) => s.traffic.p95_ms), samples.map((s) => s.traffic.p99_ms)]);
    this.outcomes.setData([xs, samples.map((s) => s.traffic.fallbacks), samples.map((s) => s.traffic.errors)]);
    this.updateShare(recent(samples, SHARE_WINDOW));
  }

  updateShare(window) {
    const total = sum(window, (s) => s.traffic.requests);
    for (const level of this.levels) {
      const served = sum(window, (s) => s.traffic.by_level[level]);
      const share = total > 0 ? served / total : 0;
      const item = this.shareLegend.querySelector(`[data-level="${CSS.escape(level)}"] [data-field="share"]`);
      item.dataset.share = share.toFixed(3);
      setText(item, total > 0 ? fmt.pct(share) : "–");
      this.shareBar.querySelector(`[data-level="${CSS.escape(level)}"]`).style.flexGrow = String(share);
    }
    this.shareBar.dataset.empty = total > 0 ? "false" : "true";
  }
}

// -- summary figures -------------------------------------------------------------------------

function kpi(name, value, sub, tone = null) {
  const box = document.querySelector(`[data-kpi="${name}"]`);
  setText(field(box, "value"), value);
  setText(field(box, "sub"), sub);
  if (tone) box.dataset.tone = tone; else delete box.dataset.tone;
}

function lastWith(samples, pick) {
  for (let i = samples.length - 1; i >= 0; i--) {
    const value = pick(samples[i]);
    if (value !== null && value !== undefined) return samples[i];
  }
  return null;
}

export function updateKpis(samples, status, intervalS) {
  const short = recent(samples, SHARE_WINDOW);
  const minute = recent(samples, RATE_WINDOW);
  const requests = sum(short, (s) => s.traffic.requests);
  kpi("rps", fmt.num(short.length ? requests / (short.length * (intervalS || 1)) : null), `mean over ${short.length} s`);
  const minuteRequests = sum(minute, (s) => s.traffic.requests);
  const fallbacks = sum(minute, (s) => s.traffic.fallbacks);
  const rate = minuteRequests > 0 ? fallbacks / minuteRequests : 0;
  const totals = status?.totals;
  kpi("fallback", fmt.pct(rate), `last min · ${fmt.pct(totals?.fallback_rate)} overall`, rate > 0.1 ? "warn" : null);
  const errors = sum(minute, (s) => s.traffic.errors);
  kpi("errors", fmt.int(errors), `last min · ${fmt.int(totals?.errors)} overall`, errors > 0 ? "bad" : null);
  const withLatency = lastWith(samples, (s) => s.traffic.p50_ms);
  const t = withLatency?.traffic;
  kpi("latency", t ? fmt.msTriple(t.p50_ms, t.p95_ms, t.p99_ms) : "–", t ? `at ${fmt.clock(withLatency.t)}` : "no request yet");
  kpi("cost", fmt.usd(totals?.cost_usd), `baseline ${fmt.usd(totals?.baseline_usd)}`);
  const saving = totals?.saving_pct;
  kpi("saving", saving == null ? "–" : `${fmt.num(saving)} %`, "vs one provider", saving != null && saving < 0 ? "warn" : null);
  const alerts = status?.alerts?.length ?? 0;
  kpi("alerts", fmt.int(alerts), alerts ? status.alerts.map((a) => a.provider).join(", ") : "all clear", alerts ? "bad" : "ok");
}

// -- cost ---------------------------------------------------------------------------------------

export class Cost {
  constructor() {
    this.build();
  }

  destroy() {
    this.observer?.disconnect();
    this.chart?.destroy();
  }

  build() {
    this.destroy();
    const box = byId("chart-cost");
    box.replaceChildren();
    this.chart = lines(box, [
      { label: "spend", colour: "--accent", fill: "--accent-soft" },
      { label: "baseline", colour: "--muted", dash: [5, 4] },
    ], { height: 120, format: (v) => fmt.usd(v) });
    this.observer = fitWidth(this.chart, box);
  }

  update(samples, status) {
    let spend = 0, baseline = 0;
    const xs = [], spent = [], base = [];
    for (const s of samples) {
      spend += s.cost.usd || 0;
      baseline += s.cost.baseline_usd || 0;
      xs.push(s.t); spent.push(spend); base.push(baseline);
    }
    this.chart.setData([xs, spent, base]);
    if (!status) return;
    const totals = status.totals;
    setText(byId("cost-summary"), `${fmt.usd(totals.cost_usd)} spent · baseline ${fmt.usd(totals.baseline_usd)} · saving ${totals.saving_pct == null ? "–" : fmt.num(totals.saving_pct) + " %"}`);
    this.providers(totals.by_provider_usd || {});
    this.tenants(status.tenants || []);
    this.fleet(status.fleet);
  }

  fleet(fleet) {
    const box = byId("fleet");
    box.hidden = !fleet;
    if (!fleet) return;
    setText(byId("fleet-summary"), fleet.up
      ? `· shared store up · ${fleet.fleet_size} instance${fleet.fleet_size === 1 ? "" : "s"}`
      : "· shared store DEGRADED: limits enforced locally at 1/N");
    const beats = Object.entries(fleet.last_heartbeat_s || {});
    byId("fleet-instances").replaceChildren(...beats.map(([id, ago]) => el("li", { "data-instance": id },
      el("strong", {}, id),
      el("span", { class: "muted" }, ` last heartbeat ${fmt.duration(ago)} ago${id === fleet.instance ? " · this instance" : ""}`))));
  }

  providers(spend) {
    const entries = Object.entries(spend).sort((a, b) => b[1] - a[1]);
    const max = Math.max(1e-12, ...entries.map(([, usd]) => usd));
    const list = byId("cost-providers");
    if (entries.length === 0) {
      list.replaceChildren(el("li", { class: "muted" }, "no spend yet"));
      return;
    }
    list.replaceChildren(...entries.map(([name, usd]) => el("li", { "data-cost-provider": name },
      el("span", { class: "bar-name" }, name),
      el("span", { class: "bar" }, el("span", { style: `width:${((usd / max) * 100).toFixed(1)}%` })),
      el("span", { class: "bar-value" }, fmt.usd(usd)))));
  }

  tenants(tenants) {
    const rows = byId("tenant-rows");
    if (tenants.length === 0) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted" }, "no tenants configured")));
      return;
    }
    rows.replaceChildren(...tenants.map((t) => el("tr", { "data-tenant": t.name },
      el("th", { scope: "row" }, t.name),
      el("td", {}, budget(t.spend_day_usd, t.budget_day_usd)),
      el("td", {}, budget(t.spend_month_usd, t.budget_month_usd)))));
  }
}

function budget(spent, limit) {
  if (limit == null) return el("span", {}, `${fmt.usd(spent)} `, el("span", { class: "muted" }, "no budget"));
  const share = limit > 0 ? spent / limit : 1;
  const tone = share >= 1 ? "bad" : share >= 0.8 ? "warn" : "ok";
  return el("span", { class: "budget" },
    el("span", { class: "meter", "data-tone": tone }, el("span", { style: `width:${Math.min(100, share * 100).toFixed(1)}%` })),
    el("span", { class: "meter-text" }, `${fmt.usd(spent)} of ${fmt.usd(limit)}${share >= 1 ? " · OVER" : ""}`));
}

// -- alerts, recommendations, events ------------------------------------------------------------

export function updateAlerts(status) {
  const alerts = status?.alerts ?? [];
  const list = byId("alert-list");
  if (alerts.length === 0) {
    list.replaceChildren(el("li", { class: "all-clear" }, el("span", { class: "badge", "data-tone": "ok" }, "✓ no active alerts")));
  } else {
    list.replaceChildren(...alerts.map((a) => el("li", { "data-alert": a.kind, "data-provider-alert": a.provider },
      el("span", { class: "badge", "data-tone": "bad" }, `▲ ${a.kind.replaceAll("_", " ")}`),
      el("strong", {}, a.provider),
      el("span", { class: "muted" }, `for ${fmt.duration(a.since_s)}`),
      el("div", { class: "alert-message" }, a.message))));
  }
  const recommendations = status?.recommendations ?? [];
  byId("recommendation-list").replaceChildren(...recommendations.map((r) => el("li", {}, r)));
}

function eventItem(event) {
  const fields = Object.entries(event.fields || {}).map(([k, v]) => `${k}=${v}`).join("  ");
  const tone = { warning: "warn", error: "bad", critical: "bad" }[event.level] || "muted";
  return el("li", { "data-event": event.event, "data-seq": event.seq },
    el("time", { datetime: new Date(event.t * 1000).toISOString() }, fmt.clock(event.t)),
    el("span", { class: "badge small", "data-tone": tone }, event.level),
    el("strong", { class: "event-name" }, event.event.replaceAll("_", " ")),
    el("span", { class: "event-fields" }, fields));
}

export class EventLog {
  constructor() {
    this.list = byId("event-log");
  }

  replace(events) {
    const newest = events.slice(-MAX_EVENTS).reverse();
    this.list.replaceChildren(...newest.map(eventItem));
    this.empty();
  }

  add(event) {
    this.list.querySelector(".empty")?.remove();
    this.list.prepend(eventItem(event));
    while (this.list.children.length > MAX_EVENTS) this.list.lastElementChild.remove();
  }

  empty() {
    if (this.list.children.length === 0) this.list.append(el("li", { class: "empty muted" }, "no events yet"));
  }
}
