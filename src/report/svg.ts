import { assertNever } from '../lib/errors.js';
import { PAGE_SIZE } from '../mm/constants.js';
import type { RunEvent, RunResult } from '../scenario/types.js';
import type { HostSample } from '../vmm/types.js';
import { formatDuration } from '../vmm/config.js';

/**
 * A chart of a run as a standalone SVG 1.1 document: over simulated time, for each
 * variant, the memory KSM saves (solid), the host's free memory (dashed), the memory
 * in pages_volatile (pages ksmd sees changing: fine dots) and, for a variant that ever
 * swapped, the swap in use (dotted); one colour per variant; and the host's RAM (thin
 * grey, one line when every run has the same). Failed events are small red ticks
 * under the time axis, with the failure as a tooltip.
 *
 * Markers over the plot, each with its tooltip (entries at one instant share one):
 * the scenario's actions (a grey tick down from the top edge), a governor's decisions
 * that changed a knob (a small triangle at the top, in the variant's colour), and OOM
 * kills and refused starts (a red dashed line across the plot).
 *
 * The output is a pure function of the results and options, and golden tests snapshot
 * it, so: every coordinate is rounded to 0.1 px and printed without trailing zeros,
 * attributes are written in a fixed order, and nothing depends on the locale (no
 * toLocaleString), the clock or the order of a Map.
 *
 * Layout (px):
 *
 *   +-------------------------------------------------+
 *   |                    title                        |  TOP
 *   | y ticks |  plot area: gridlines, the series     |
 *   |         +---------------------------------------+  axes
 *   |             x ticks, error ticks, axis title    |
 *   |             legend, in as many rows as it needs |
 *   +-------------------------------------------------+
 */

export interface ChartOptions {
  /** Default 800. */
  width?: number;
  /** Default 400. The plot area shrinks when the legend needs more rows. */
  height?: number;
  /** Default "<scenario>: memory saved and free". */
  title?: string;
}

const DEFAULT_WIDTH = 800;
const DEFAULT_HEIGHT = 400;
const MIN_WIDTH = 240;
const MIN_HEIGHT = 160;

const FONT_SIZE = 12;
/** Width of a character at FONT_SIZE in a sans-serif face, generously: it only sizes the legend and the y margin. */
const CHAR_WIDTH = 7;

const TOP = 36;
const RIGHT = 24;
/** Below the plot: tick labels, then the axis title. */
const X_AXIS_SPACE = 40;
const LEGEND_ROW = 18;
const LEGEND_SWATCH = 24;
const LEGEND_GAP = 18;

/**
 * Okabe and Ito's palette, which stays distinguishable for colour-blind readers, in an
 * order that keeps its vermilion (close to the red of the error ticks) for last.
 */
const PALETTE = ['#0072b2', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000', '#d55e00'];
const ERROR_COLOUR = '#d00000';
const RAM_COLOUR = '#888888';
const EVENT_COLOUR = '#666666';

/** How each kind of series is drawn; the colour comes from its variant. */
const SERIES_KINDS = [
  { key: 'saved', label: 'memory saved', dash: null, width: 2 },
  { key: 'free', label: 'free memory', dash: '6 4', width: 1.5 },
  { key: 'volatile', label: 'pages_volatile', dash: '1 2', width: 1 },
  { key: 'swap', label: 'swap used', dash: '2 3', width: 1.5 },
  { key: 'ram', label: 'host RAM', dash: null, width: 1 },
] as const;

type SeriesKind = (typeof SERIES_KINDS)[number];

interface Series {
  kind: SeriesKind;
  colour: string;
  label: string;
  samples: readonly HostSample[];
}

function valueOf(kind: SeriesKind, s: HostSample): number {
  switch (kind.key) {
    case 'saved':
      return s.savedBytes;
    case 'free':
      return s.freeBytes;
    case 'swap':
      return s.swapUsedBytes;
    case 'volatile':
      return s.pagesVolatile * PAGE_SIZE;
    case 'ram':
      return s.totalBytes;
    default:
      return assertNever(kind, 'series kind');
  }
}

export function renderChart(results: readonly RunResult[], opts: ChartOptions = {}): string {
  const width = checkSize('width', opts.width ?? DEFAULT_WIDTH, MIN_WIDTH);
  const height = checkSize('height', opts.height ?? DEFAULT_HEIGHT, MIN_HEIGHT);
  const title = opts.title ?? defaultTitle(results);

  const series = collectSeries(results);

  // Domains. Time runs from 0 to the end of the longest run, exactly: the last sample
  // sits on the right edge. Bytes run from 0 to the tick at or above the largest value,
  // so the top gridline is labelled.
  let tMax = 0;
  for (const r of results) {
    tMax = Math.max(tMax, r.durationMs);
    for (const s of r.samples) tMax = Math.max(tMax, s.t);
  }
  if (tMax <= 0) tMax = 1000;
  let vMax = 0;
  for (const s of series) for (const x of s.samples) vMax = Math.max(vMax, valueOf(s.kind, x));
  if (vMax <= 0) vMax = 1024 * 1024;
  const xAxis = timeAxis(tMax);
  const yAxis = bytesAxis(vMax);

  // Layout: the legend's rows decide how much room the plot keeps.
  const yLabelWidth = Math.max(...yAxis.ticks.map((t) => t.label.length)) * CHAR_WIDTH;
  const left = 24 + yLabelWidth + 10;
  const legend = layoutLegend(series, width - left - RIGHT, markerKindsIn(results));
  const bottom = X_AXIS_SPACE + 10 + legend.rows * LEGEND_ROW;
  const plot = { x0: left, x1: width - RIGHT, y0: TOP, y1: Math.max(TOP + 40, height - bottom) };
  const px = (t: number): number => plot.x0 + (t / xAxis.max) * (plot.x1 - plot.x0);
  const py = (v: number): number => plot.y1 - (v / yAxis.max) * (plot.y1 - plot.y0);

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" font-family="sans-serif" font-size="${FONT_SIZE}">`,
  );
  out.push(`<title>${esc(title)}</title>`);
  out.push(`<rect x="0" y="0" width="${n(width)}" height="${n(height)}" fill="#ffffff"/>`);
  out.push(`<text x="${n(width / 2)}" y="${n(TOP / 2 + 5)}" text-anchor="middle" font-size="${FONT_SIZE + 3}" font-weight="bold">${esc(title)}</text>`);

  // Gridlines and tick labels.
  out.push('<g class="grid" stroke="#dddddd" stroke-width="1">');
  for (const t of xAxis.ticks) out.push(`<line x1="${n(px(t.value))}" y1="${n(plot.y0)}" x2="${n(px(t.value))}" y2="${n(plot.y1)}"/>`);
  for (const t of yAxis.ticks) out.push(`<line x1="${n(plot.x0)}" y1="${n(py(t.value))}" x2="${n(plot.x1)}" y2="${n(py(t.value))}"/>`);
  out.push('</g>');
  out.push('<g class="ticks" fill="#333333">');
  for (const t of xAxis.ticks) out.push(`<text x="${n(px(t.value))}" y="${n(plot.y1 + 16)}" text-anchor="middle">${esc(t.label)}</text>`);
  for (const t of yAxis.ticks) out.push(`<text x="${n(plot.x0 - 6)}" y="${n(py(t.value) + 4)}" text-anchor="end">${esc(t.label)}</text>`);
  out.push('</g>');
  out.push(`<g class="axes" stroke="#333333" stroke-width="1">`);
  out.push(`<line x1="${n(plot.x0)}" y1="${n(plot.y1)}" x2="${n(plot.x1)}" y2="${n(plot.y1)}"/>`);
  out.push(`<line x1="${n(plot.x0)}" y1="${n(plot.y0)}" x2="${n(plot.x0)}" y2="${n(plot.y1)}"/>`);
  out.push('</g>');
  out.push(`<text class="axis-title" x="${n((plot.x0 + plot.x1) / 2)}" y="${n(plot.y1 + 34)}" text-anchor="middle">${esc(xAxis.title)}</text>`);
  const yMid = (plot.y0 + plot.y1) / 2;
  out.push(`<text class="axis-title" x="14" y="${n(yMid)}" text-anchor="middle" transform="rotate(-90 14 ${n(yMid)})">${esc(yAxis.title)}</text>`);

  // The series.
  out.push('<g class="series" fill="none" stroke-linejoin="round" stroke-linecap="round">');
  for (const s of series) {
    const d = pathData(s.samples.map((x) => [px(x.t), py(valueOf(s.kind, x))]));
    out.push(`<path d="${d}" stroke="${s.colour}" stroke-width="${n(s.kind.width)}"${dashAttr(s.kind)}><title>${esc(s.label)}</title></path>`);
  }
  out.push('</g>');

  // Markers: actions, governor changes, OOM kills and refused starts.
  const markers = collectMarkers(results);
  const markerX = (t: number): string => n(px(Math.min(Math.max(t, 0), xAxis.max)));
  if (markers.length > 0) {
    out.push('<g class="markers">');
    for (const m of markers) {
      const x = markerX(m.t);
      const tip = `<title>${esc(m.tip)}</title>`;
      switch (m.kind) {
        case 'action':
          out.push(`<line class="action" x1="${x}" y1="${n(plot.y0)}" x2="${x}" y2="${n(plot.y0 + 8)}" stroke="${EVENT_COLOUR}" stroke-width="1.5">${tip}</line>`);
          break;
        case 'governor': {
          const cx = px(Math.min(Math.max(m.t, 0), xAxis.max));
          out.push(`<path class="governor" d="M${n(cx - 4)} ${n(plot.y0 - 7)} L${n(cx + 4)} ${n(plot.y0 - 7)} L${n(cx)} ${n(plot.y0 - 1)} Z" fill="${m.colour}">${tip}</path>`);
          break;
        }
        case 'oom':
          out.push(`<line class="oom" x1="${x}" y1="${n(plot.y0)}" x2="${x}" y2="${n(plot.y1)}" stroke="${ERROR_COLOUR}" stroke-width="1.5" stroke-dasharray="4 3">${tip}</line>`);
          break;
        default:
          assertNever(m.kind, 'marker kind');
      }
    }
    out.push('</g>');
  }

  // Failed events: a red tick just under the time axis.
  const errors: string[] = [];
  for (const r of results) {
    for (const e of r.events) {
      if (e.error === null) continue;
      const x = n(px(Math.min(Math.max(e.t, 0), xAxis.max)));
      const who = results.length > 1 ? `${variantName(r)}: ` : '';
      const tip = `${who}${formatDuration(e.t)}: ${e.what}: ${e.error}`;
      errors.push(`<line x1="${x}" y1="${n(plot.y1 - 5)}" x2="${x}" y2="${n(plot.y1 + 5)}"><title>${esc(tip)}</title></line>`);
    }
  }
  if (errors.length > 0) out.push(`<g class="errors" stroke="${ERROR_COLOUR}" stroke-width="2">`, ...errors, '</g>');

  // The legend, under the axis title.
  out.push('<g class="legend">');
  const legendTop = plot.y1 + X_AXIS_SPACE + 10;
  for (const item of legend.items) {
    const x = plot.x0 + item.x;
    const y = legendTop + item.row * LEGEND_ROW;
    const s = item.series;
    out.push(`<line x1="${n(x)}" y1="${n(y)}" x2="${n(x + LEGEND_SWATCH - 4)}" y2="${n(y)}" stroke="${s.colour}" stroke-width="${n(s.kind.width)}"${dashAttr(s.kind)}/>`);
    out.push(`<text x="${n(x + LEGEND_SWATCH + 2)}" y="${n(y + 4)}">${esc(s.label)}</text>`);
  }
  if (errors.length > 0) {
    const x = plot.x0 + legend.errorX;
    const y = legendTop + legend.errorRow * LEGEND_ROW;
    out.push(`<line x1="${n(x + 10)}" y1="${n(y - 5)}" x2="${n(x + 10)}" y2="${n(y + 5)}" stroke="${ERROR_COLOUR}" stroke-width="2"/>`);
    out.push(`<text x="${n(x + LEGEND_SWATCH + 2)}" y="${n(y + 4)}">failed step</text>`);
  }
  for (const item of legend.markers) {
    const x = plot.x0 + item.x;
    const y = legendTop + item.row * LEGEND_ROW;
    switch (item.kind) {
      case 'action':
        out.push(`<line x1="${n(x + 10)}" y1="${n(y - 5)}" x2="${n(x + 10)}" y2="${n(y + 3)}" stroke="${EVENT_COLOUR}" stroke-width="1.5"/>`);
        break;
      case 'governor':
        out.push(`<path d="M${n(x + 6)} ${n(y - 4)} L${n(x + 14)} ${n(y - 4)} L${n(x + 10)} ${n(y + 2)} Z" fill="${EVENT_COLOUR}"/>`);
        break;
      case 'oom':
        out.push(`<line x1="${n(x + 10)}" y1="${n(y - 6)}" x2="${n(x + 10)}" y2="${n(y + 6)}" stroke="${ERROR_COLOUR}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
        break;
      default:
        assertNever(item.kind, 'marker kind');
    }
    out.push(`<text x="${n(x + LEGEND_SWATCH + 2)}" y="${n(y + 4)}">${MARKER_LABELS[item.kind]}</text>`);
  }
  out.push('</g>');
  if (series.length === 0) {
    out.push(`<text x="${n((plot.x0 + plot.x1) / 2)}" y="${n(yMid)}" text-anchor="middle" fill="#666666">no samples</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function checkSize(what: string, v: number, min: number): number {
  if (!Number.isFinite(v) || v < min) throw new RangeError(`chart ${what} must be at least ${min} px, got ${v}`);
  return v;
}

function defaultTitle(results: readonly RunResult[]): string {
  const names: string[] = [];
  for (const r of results) if (!names.includes(r.scenario)) names.push(r.scenario);
  return names.length === 0 ? 'memory saved and free' : `${names.join(', ')}: memory saved and free`;
}

function variantName(r: RunResult): string {
  return r.variant ?? r.scenario;
}

/**
 * Saved, free and pages_volatile for every run with samples, swap for a run that ever
 * had swap in use, and the host's RAM: once, in grey, when every run's RAM over time
 * is the same (variants of one scenario), else per run.
 */
function collectSeries(results: readonly RunResult[]): Series[] {
  const out: Series[] = [];
  const ramOf = (r: RunResult): string => r.samples.map((s) => `${s.t}:${s.totalBytes}`).join(',');
  const withSamples = results.filter((r) => r.samples.length > 0);
  const oneRam = withSamples.every((r) => ramOf(r) === ramOf(withSamples[0]!));
  results.forEach((r, i) => {
    if (r.samples.length === 0) return;
    const colour = PALETTE[i % PALETTE.length]!;
    const prefix = results.length > 1 || r.variant !== null ? `${variantName(r)}: ` : '';
    const swapped = r.samples.some((s) => s.swapUsedBytes > 0);
    for (const kind of SERIES_KINDS) {
      if (kind.key === 'swap' && !swapped) continue;
      if (kind.key === 'ram') {
        if (oneRam && r !== withSamples[0]) continue;
        out.push({ kind, colour: oneRam ? RAM_COLOUR : colour, label: oneRam ? kind.label : prefix + kind.label, samples: r.samples });
        continue;
      }
      out.push({ kind, colour, label: prefix + kind.label, samples: r.samples });
    }
  });
  return out;
}

type MarkerKind = 'action' | 'governor' | 'oom';

const MARKER_LABELS: Readonly<Record<MarkerKind, string>> = {
  action: 'event',
  governor: 'governor change',
  oom: 'OOM kill / refused start',
};

interface Marker {
  kind: MarkerKind;
  t: number;
  colour: string;
  tip: string;
}

/** Which marker, if any, a run event gets. */
function markerKind(e: RunEvent): MarkerKind | null {
  switch (e.kind) {
    case 'action':
      return 'action';
    case 'governor':
      return 'governor';
    case 'oom-kill':
    case 'refused':
      return 'oom';
    case 'guest':
    case 'governor-idle':
      return null;
    default:
      return assertNever(e.kind, 'event kind');
  }
}

function markerKindsIn(results: readonly RunResult[]): MarkerKind[] {
  const kinds = new Set<MarkerKind>();
  for (const r of results) for (const e of r.events) {
    const k = markerKind(e);
    if (k !== null) kinds.add(k);
  }
  return (['action', 'governor', 'oom'] as const).filter((k) => kinds.has(k));
}

/** One marker per run, kind and instant, its tooltip every entry there, in order. */
function collectMarkers(results: readonly RunResult[]): Marker[] {
  const out: Marker[] = [];
  results.forEach((r, i) => {
    const colour = PALETTE[i % PALETTE.length]!;
    const who = results.length > 1 ? `${variantName(r)}: ` : '';
    const at = new Map<string, Marker>();
    for (const e of r.events) {
      const kind = markerKind(e);
      if (kind === null) continue;
      const line = `${e.what}${e.error === null ? '' : `: ${e.error}`}`;
      const key = `${kind} ${e.t}`;
      const m = at.get(key);
      if (m !== undefined) m.tip += `\n${line}`;
      else {
        const fresh: Marker = { kind, t: e.t, colour, tip: `${who}${formatDuration(e.t)}: ${line}` };
        at.set(key, fresh);
        out.push(fresh);
      }
    }
  });
  return out;
}

function dashAttr(kind: SeriesKind): string {
  return kind.dash === null ? '' : ` stroke-dasharray="${kind.dash}"`;
}

/**
 * "M x y L x y ..." through the points, in 0.1 px. A point that rounds to the previous
 * one is dropped, and so is the middle of three on one horizontal line: a long flat
 * stretch (free memory while nothing happens) costs two points, not one per sample.
 */
function pathData(points: readonly (readonly [number, number])[]): string {
  const kept: [number, number][] = [];
  for (const [x0, y0] of points) {
    const p: [number, number] = [round1(x0), round1(y0)];
    const last = kept[kept.length - 1];
    if (last !== undefined && last[0] === p[0] && last[1] === p[1]) continue;
    const before = kept[kept.length - 2];
    if (last !== undefined && before !== undefined && before[1] === last[1] && last[1] === p[1]) kept.pop();
    kept.push(p);
  }
  if (kept.length === 1) return `M${n(kept[0]![0])} ${n(kept[0]![1])}h0`; // one sample: a dot (round caps)
  return kept.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${n(x)} ${n(y)}`).join(' ');
}

// ---- axes ------------------------------------------------------------------------------------

interface Tick {
  value: number;
  label: string;
}

interface Axis {
  /** The domain is [0, max]. */
  max: number;
  ticks: Tick[];
  title: string;
}

/** About this many intervals on an axis; the step is the 1-2-5 number nearest above range / TARGET. */
const TARGET_TICKS = 6;

/**
 * 1, 2 or 5 × 10^k, the smallest at or above `raw`. Plain 1-2-5 steps keep every label
 * round in its unit (0, 20, 40 s; 0, 0.5, 1 GiB), which 2.5 or 128 MiB steps would not.
 */
function niceStep(raw: number): number {
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw * (1 - 1e-9)) return m * mag;
  return 10 * mag;
}

/** The decimals a multiple of `step` needs: 0 for 20, 1 for 0.5, 2 for 0.05. */
function decimalsOf(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

function label(value: number, decimals: number): string {
  const s = value.toFixed(decimals);
  return decimals === 0 ? s : s.replace(/\.?0+$/, '');
}

const TIME_UNITS = [
  { name: 'ms', ms: 1 },
  { name: 's', ms: 1000 },
  { name: 'min', ms: 60_000 },
  { name: 'h', ms: 3_600_000 },
] as const;

/**
 * Time in the largest unit that the run lasts at least two of (a 90 s run in s, a
 * 5 min run in min), ticks at round multiples in that unit, up to the end of the run.
 */
function timeAxis(tMax: number): Axis {
  let unit: (typeof TIME_UNITS)[number] = TIME_UNITS[0];
  for (const u of TIME_UNITS) if (tMax >= 2 * u.ms) unit = u;
  const span = tMax / unit.ms;
  const step = niceStep(span / TARGET_TICKS);
  const decimals = decimalsOf(step);
  const ticks: Tick[] = [];
  for (let i = 0; i * step <= span * (1 + 1e-9); i++) {
    const v = Number((i * step).toFixed(decimals));
    ticks.push({ value: v * unit.ms, label: label(v, decimals) });
  }
  return { max: tMax, ticks, title: `simulated time (${unit.name})` };
}

const BYTE_UNITS = [
  { name: 'B', bytes: 1 },
  { name: 'KiB', bytes: 1024 },
  { name: 'MiB', bytes: 1024 ** 2 },
  { name: 'GiB', bytes: 1024 ** 3 },
  { name: 'TiB', bytes: 1024 ** 4 },
] as const;

/** Bytes in the largest binary unit the maximum holds at least two of, from 0 to the first tick at or above the maximum. */
function bytesAxis(vMax: number): Axis {
  let unit: (typeof BYTE_UNITS)[number] = BYTE_UNITS[0];
  for (const u of BYTE_UNITS) if (vMax >= 2 * u.bytes) unit = u;
  const span = vMax / unit.bytes;
  const step = unit.bytes === 1 ? Math.max(1, niceStep(span / TARGET_TICKS)) : niceStep(span / TARGET_TICKS);
  const decimals = decimalsOf(step);
  const count = Math.max(1, Math.ceil(span / step - 1e-9));
  const ticks: Tick[] = [];
  for (let i = 0; i <= count; i++) {
    const v = Number((i * step).toFixed(decimals));
    ticks.push({ value: v * unit.bytes, label: label(v, decimals) });
  }
  return { max: ticks[ticks.length - 1]!.value, ticks, title: `memory (${unit.name})` };
}

// ---- legend ----------------------------------------------------------------------------------

interface LegendLayout {
  items: { series: Series; x: number; row: number }[];
  /** The marker kinds the chart shows, after the series. */
  markers: { kind: MarkerKind; x: number; row: number }[];
  rows: number;
  /** Where the "failed step" entry goes (always reserved: the layout does not depend on whether there are errors). */
  errorX: number;
  errorRow: number;
}

/**
 * Entries left to right, a new row when the next would pass `maxWidth`; each variant
 * starts a new row when there are several, so a variant's lines read together.
 */
function layoutLegend(series: readonly Series[], maxWidth: number, markerKinds: readonly MarkerKind[]): LegendLayout {
  const items: LegendLayout['items'] = [];
  let x = 0;
  let row = 0;
  let colour: string | null = null;
  const place = (textLength: number): { x: number; row: number } => {
    const w = LEGEND_SWATCH + 2 + textLength * CHAR_WIDTH;
    if (x > 0 && x + w > maxWidth) {
      x = 0;
      row++;
    }
    const at = { x, row };
    x += w + LEGEND_GAP;
    return at;
  };
  for (const s of series) {
    if (colour !== null && s.colour !== colour && x > 0) {
      x = 0;
      row++;
    }
    colour = s.colour;
    items.push({ series: s, ...place(s.label.length) });
  }
  const err = place('failed step'.length);
  const markers = markerKinds.map((kind) => ({ kind, ...place(MARKER_LABELS[kind].length) }));
  const lastRow = markers.length > 0 ? markers[markers.length - 1]!.row : err.row;
  return { items, markers, rows: lastRow + 1, errorX: err.x, errorRow: err.row };
}

// ---- text ------------------------------------------------------------------------------------

/** A coordinate or size rounded to 0.1 px, without trailing zeros, never "-0". */
function n(v: number): string {
  const r = round1(v);
  return r === 0 ? '0' : String(r);
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/**
 * Text for element content and attribute values. Characters XML 1.0 forbids (C0 controls
 * other than tab, newline and CR, lone surrogates) are dropped: a run's event text is
 * free text and must not make the document unreadable.
 */
function esc(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}
