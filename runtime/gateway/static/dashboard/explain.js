// The route explainer: a request's plan, level by level, with every candidate in rank order and
// every provider left out, with its reason.

import { api } from "./api.js";
import { byId, el, fmt } from "./dom.js";

function request(form) {
  const data = new FormData(form);
  const number = (name) => {
    const value = String(data.get(name) ?? "").trim();
    return value === "" ? null : Number(value);
  };
  return {
    complexity: data.get("complexity"),
    quality: data.get("quality"),
    budget_usd: number("budget_usd"),
    model: data.get("model") || null,
    prompt: null,
    max_tokens: number("max_tokens"),
  };
}

function levelBlock(level, index) {
  const candidates = level.candidates.map((c, rank) => el("li", { "data-candidate": c.provider },
    el("span", { class: "rank" }, `#${rank + 1}`),
    el("strong", {}, c.provider),
    el("span", {}, c.model || "–"),
    el("span", { class: "muted" }, `score ${fmt.num(c.score)} · est. ${fmt.usd(c.estimated_cost_usd)}`),
    c.reason ? el("span", { class: "note" }, c.reason) : null,
    ...(c.notes || []).map((n) => el("span", { class: "note" }, n))));
  const exclusions = level.exclusions.map((x) => el("li", { "data-exclusion": x.provider, "data-cause": x.cause },
    el("span", { class: "badge small", "data-tone": "bad" }, "✖ excluded"),
    el("strong", {}, x.provider),
    el("span", { class: "muted" }, x.cause.replaceAll("_", " ")),
    el("span", {}, x.reason)));
  return el("div", { class: "plan-level", "data-plan-level": level.level },
    el("h3", {}, el("span", { class: "swatch", "data-level-index": index % 4 }), level.level.replaceAll("_", " ")),
    candidates.length ? el("ol", { class: "candidates" }, ...candidates) : el("p", { class: "muted" }, "no candidate"),
    exclusions.length ? el("ul", { class: "exclusions" }, ...exclusions) : null);
}

function show(plan) {
  const result = byId("explain-result");
  result.replaceChildren(
    el("p", { class: "plan-summary", "data-field": "summary" }, plan.summary),
    el("div", { class: "plan-levels" }, ...plan.levels.map(levelBlock)),
    el("details", { class: "plan-lines" }, el("summary", {}, "The plan as text"),
      el("pre", { "data-field": "lines" }, plan.lines.join("\n"))));
}

export function setUpExplainer(meta) {
  const form = byId("explain-form");
  const models = [...new Set(meta.providers.flatMap((p) => p.models))].sort();
  byId("explain-model").replaceChildren(el("option", { value: "" }, "any"),
    ...models.map((m) => el("option", { value: m }, m)));
  form.onsubmit = async (event) => {
    event.preventDefault();
    const error = byId("explain-error");
    error.textContent = "";
    try {
      show(await api.explain(request(form)));
    } catch (exc) {
      error.textContent = exc.message;
    }
  };
}
