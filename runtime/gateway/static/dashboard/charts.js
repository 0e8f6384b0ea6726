// Charts, all drawn by uPlot (vendor/uplot). Colours come from the page's CSS variables, so
// light and dark mode need no second palette here; charts are rebuilt when the scheme changes.

/* global uPlot */

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Colour of the level at `index` in config order (the CSS holds four, then they repeat). */
export function levelColour(index) {
  return cssVar(`--level-${index % 4}`);
}

/** Call `rebuild` when the colour scheme flips (charts read their colours once, at creation). */
export function onSchemeChange(rebuild) {
  const query = window.matchMedia("(prefers-color-scheme: dark)");
  query.addEventListener("change", () => rebuild());
}

/** Tick spacings in seconds: samples are a second apart, so never less than that. */
const TIME_INCREMENTS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const two = (n) => String(n).padStart(2, "0");

/** Wall-clock tick labels: HH:MM, with seconds when the ticks are less than a minute apart. */
function timeTicks(u, splits, axisIndex, space, increment) {
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return increment < 60 ? `${hm}:${two(d.getSeconds())}` : hm;
  });
}

/** The value axis is as wide as its longest label ("1,000 ms" needs more room than "20"). */
function valueAxisWidth(u, values) {
  const longest = Math.max(0, ...(values || []).map((v) => String(v).length));
  return Math.max(32, longest * 7 + 14);
}

function axes(valueFormat) {
  const stroke = cssVar("--muted");
  const grid = { stroke: cssVar("--grid"), width: 1 };
  return [
    { stroke, grid, ticks: { show: false }, font: "11px system-ui, sans-serif", values: timeTicks, space: 60, incrs: TIME_INCREMENTS },
    {
      stroke, grid, ticks: { show: false }, size: valueAxisWidth, font: "11px system-ui, sans-serif",
      values: (u, splits) => splits.map(valueFormat),
    },
  ];
}

/** A tiny chart in a table cell: one line, optionally a shaded second series behind it. */
export function sparkline(target, { width = 132, height = 30, max = null, shade = false } = {}) {
  const line = cssVar("--accent");
  const series = [{}];
  if (shade) series.push({ stroke: cssVar("--accent-soft"), fill: cssVar("--accent-soft"), width: 0, points: { show: false } });
  series.push({ stroke: line, width: 1.5, points: { show: false } });
  const opts = {
    width, height,
    pxAlign: false,
    cursor: { show: false },
    select: { show: false },
    legend: { show: false },
    scales: { x: { time: false }, y: { range: (u, lo, hi) => [0, Math.max(hi || 0, max ?? 1e-9) * 1.05] } },
    axes: [{ show: false }, { show: false }],
    series,
  };
  return new uPlot(opts, [[], ...series.slice(1).map(() => [])], target);
}

/** Requests/s per level, stacked: series hold running sums, bands fill between neighbours. */
export function stackedLevels(target, levels, height = 190) {
  const series = [{}];
  const bands = [];
  levels.forEach((level, index) => {
    const colour = levelColour(index);
    series.push({ label: level, stroke: colour, width: 0, fill: index === 0 ? colour + "cc" : undefined, points: { show: false } });
    if (index > 0) bands.push({ series: [index + 1, index], fill: colour + "cc" });
  });
  const opts = {
    width: target.clientWidth || 600, height,
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    select: { show: false },
    legend: { show: false },
    scales: { y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
    axes: axes((v) => String(v)),
    series, bands,
  };
  return new uPlot(opts, [[], ...levels.map(() => [])], target);
}

/** Several lines on one y axis, e.g. latency percentiles or cumulative spend. */
export function lines(target, defs, { height = 190, format = (v) => String(v) } = {}) {
  const series = [{}, ...defs.map((d) => ({
    label: d.label, stroke: cssVar(d.colour), width: d.width ?? 1.5, dash: d.dash,
    points: { show: false }, fill: d.fill ? cssVar(d.fill) : undefined,
    paths: d.bars ? uPlot.paths.bars({ size: [0.8, 6] }) : undefined,
  }))];
  const opts = {
    width: target.clientWidth || 600, height,
    cursor: { points: { show: false }, drag: { x: false, y: false } },
    select: { show: false },
    legend: { show: true, live: false },
    scales: { y: { range: (u, lo, hi) => [0, Math.max(1e-9, hi || 0) * 1.1] } },
    axes: axes(format),
    series,
  };
  return new uPlot(opts, [[], ...defs.map(() => [])], target);
}

/** Keep a chart as wide as its box. */
export function fitWidth(chart, box) {
  const observer = new ResizeObserver(() => {
    const width = Math.floor(box.clientWidth);
    if (width > 0 && width !== chart.width) chart.setSize({ width, height: chart.height });
  });
  observer.observe(box);
  return observer;
}
