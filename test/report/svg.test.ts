import { describe, expect, it } from 'vitest';
import { renderChart } from '../../src/report/svg.js';
import type { RunResult } from '../../src/scenario/types.js';
import type { HostSample } from '../../src/vmm/types.js';
import { FIXED, SINGLE, TUNED, ev } from './fixtures.js';

interface Element {
  name: string;
  attrs: Record<string, string>;
  children: Element[];
  text: string;
}

/**
 * Just enough of an XML parser to say the chart is well-formed: an optional XML
 * declaration, then exactly one root element; every tag closed in order; every
 * attribute quoted, named once; no raw '<', '>' or stray '&' in text. Throws naming the
 * first problem; returns the root.
 */
function parseXml(doc: string): Element {
  const body = doc.replace(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n/, '');
  const tokens = body.match(/<[^<>]*>|[^<>]+|[<>]/g) ?? [];
  const root: Element = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: Element[] = [root];
  for (const tok of tokens) {
    const top = stack[stack.length - 1]!;
    if (tok === '<' || tok === '>') throw new Error(`raw ${tok} in text`);
    if (!tok.startsWith('<')) {
      if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(tok)) throw new Error(`bare & in text ${JSON.stringify(tok)}`);
      if (top === root && tok.trim() !== '') throw new Error(`text outside the root: ${JSON.stringify(tok)}`);
      top.text += tok;
      continue;
    }
    const close = /^<\/([A-Za-z][\w:.-]*)\s*>$/.exec(tok);
    if (close !== null) {
      if (top.name !== close[1]) throw new Error(`</${close[1]}> closes <${top.name}>`);
      stack.pop();
      continue;
    }
    const open = /^<([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<>]*")*)\s*(\/?)>$/.exec(tok);
    if (open === null) throw new Error(`malformed tag (unquoted attribute?): ${tok}`);
    const attrs: Record<string, string> = {};
    for (const m of open[2]!.matchAll(/([A-Za-z_:][\w:.-]*)="([^"]*)"/g)) {
      if (m[1]! in attrs) throw new Error(`attribute ${m[1]} twice in ${tok}`);
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(m[2]!)) throw new Error(`bare & in attribute ${m[1]}`);
      attrs[m[1]!] = m[2]!;
    }
    const el: Element = { name: open[1]!, attrs, children: [], text: '' };
    if (top === root && root.children.length > 0) throw new Error(`a second root element <${el.name}>`);
    top.children.push(el);
    if (open[3] !== '/') stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`<${stack[stack.length - 1]!.name}> never closed`);
  if (root.children.length !== 1) throw new Error('no root element');
  return root.children[0]!;
}

function all(el: Element, pred: (e: Element) => boolean, out: Element[] = []): Element[] {
  if (pred(el)) out.push(el);
  for (const c of el.children) all(c, pred, out);
  return out;
}

function group(svg: Element, cls: string): Element | undefined {
  return all(svg, (e) => e.name === 'g' && e.attrs.class === cls)[0];
}

function unescape(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** The tick labels, x axis first: the x labels are the ones centred under the plot. */
function tickLabels(svg: Element): { x: string[]; y: string[] } {
  const texts = group(svg, 'ticks')!.children;
  return {
    x: texts.filter((t) => t.attrs['text-anchor'] === 'middle').map((t) => t.text),
    y: texts.filter((t) => t.attrs['text-anchor'] === 'end').map((t) => t.text),
  };
}

/** A run whose samples are `n` points over `durationMs`, with free memory falling linearly from `free` to 0. */
function ramp(durationMs: number, free: number, n = 5): RunResult {
  const samples: HostSample[] = [];
  for (let i = 0; i < n; i++) {
    // A host whose RAM is all free at first: the RAM line never sets the scale above free's.
    samples.push({ ...SINGLE.samples[0]!, t: (durationMs * i) / (n - 1), totalBytes: free, freeBytes: free - (free * i) / (n - 1), savedBytes: 0, swapUsedBytes: 0 });
  }
  return { ...SINGLE, durationMs, samples, events: [] };
}

describe('the well-formedness check these tests use', () => {
  it('rejects what is not well-formed XML', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow('</svg> closes <g>');
    expect(() => parseXml('<svg><g>')).toThrow('never closed');
    expect(() => parseXml('<svg/><svg/>')).toThrow('a second root');
    expect(() => parseXml('<svg width=1/>')).toThrow('unquoted attribute');
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow('attribute a twice');
    expect(() => parseXml('<svg>a & b</svg>')).toThrow('bare &');
    expect(() => parseXml('<svg>a > b</svg>')).toThrow('raw >');
    expect(parseXml('<svg a="1"><t>x &amp; y</t></svg>').children[0]!.text).toBe('x &amp; y');
  });
});

describe('renderChart: the document', () => {
  it('is well-formed XML with a single <svg> root carrying xmlns, version 1.1 and a viewBox', () => {
    for (const results of [[SINGLE], [FIXED, TUNED], [], [{ ...SINGLE, samples: [] }]]) {
      const svg = parseXml(renderChart(results));
      expect(svg.name).toBe('svg');
      expect(svg.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
      expect(svg.attrs.version).toBe('1.1');
      expect(svg.attrs.viewBox).toBe('0 0 800 400');
    }
  });

  it('takes its size from the options', () => {
    const svg = parseXml(renderChart([SINGLE], { width: 1024, height: 500 }));
    expect([svg.attrs.width, svg.attrs.height, svg.attrs.viewBox]).toEqual(['1024', '500', '0 0 1024 500']);
  });

  it('refuses a size too small to draw in', () => {
    expect(() => renderChart([SINGLE], { width: 50 })).toThrow('chart width must be at least 240 px, got 50');
    expect(() => renderChart([SINGLE], { height: Number.NaN })).toThrow('chart height must be at least 160 px, got NaN');
  });

  it('is the same text every time, and ends with a newline', () => {
    const a = renderChart([FIXED, TUNED], { title: 't' });
    expect(renderChart([FIXED, TUNED], { title: 't' })).toBe(a);
    expect(a.endsWith('</svg>\n')).toBe(true);
  });

  it('rounds every number it prints to 0.1 px', () => {
    const text = renderChart([FIXED, TUNED], { width: 777, height: 333 });
    const svg = parseXml(text);
    const numeric = ['x', 'y', 'x1', 'y1', 'x2', 'y2', 'width', 'height', 'stroke-width'];
    for (const el of all(svg, () => true)) {
      for (const a of numeric) if (a in el.attrs) expect(el.attrs[a]).toMatch(/^-?\d+(\.\d)?$/);
      if (el.name === 'path') for (const num of el.attrs.d!.match(/-?[\d.]+/g)!) expect(num).toMatch(/^-?\d+(\.\d)?$/);
    }
  });
});

describe('renderChart: the series', () => {
  it('draws saved (solid), free (dashed), pages_volatile (fine dots) and the host RAM (grey) for a run that never swapped', () => {
    const svg = parseXml(renderChart([SINGLE]));
    const paths = all(group(svg, 'series')!, (e) => e.name === 'path');
    expect(paths.map((p) => p.children[0]!.text)).toEqual(['memory saved', 'free memory', 'pages_volatile', 'host RAM']);
    expect(paths.map((p) => p.attrs['stroke-dasharray'])).toEqual([undefined, '6 4', '1 2', undefined]);
    expect(paths[3]!.attrs.stroke).toBe('#888888');
    // pages_volatile is 450 pages at the end (1.8 MiB), host RAM 2 GiB throughout: a flat line at the top of the 0..2 GiB axis.
    const axisTop = group(svg, 'axes')!.children[1]!.attrs.y1;
    expect(paths[3]!.attrs.d).toMatch(new RegExp(`^M[\\d.]+ ${axisTop} L[\\d.]+ ${axisTop}$`));
  });

  it('draws one path per series: saved and free for each variant, swap for the one that swapped', () => {
    const svg = parseXml(renderChart([FIXED, TUNED]));
    const paths = all(group(svg, 'series')!, (e) => e.name === 'path');
    // Both variants ran on the same 2 GiB: one RAM line.
    expect(paths.map((p) => p.children[0]!.text)).toEqual([
      'fixed: memory saved',
      'fixed: free memory',
      'fixed: pages_volatile',
      'host RAM',
      'ksmtuned: memory saved',
      'ksmtuned: free memory',
      'ksmtuned: pages_volatile',
      'ksmtuned: swap used',
    ]);
    // One colour per variant.
    expect(new Set(paths.slice(0, 3).map((p) => p.attrs.stroke)).size).toBe(1);
    expect(paths[0]!.attrs.stroke).not.toBe(paths[4]!.attrs.stroke);
    // And a legend entry per series, plus the failed-step key and the markers there are (both runs have actions).
    const legend = group(svg, 'legend')!.children.filter((e) => e.name === 'text').map((e) => e.text);
    expect(legend).toEqual([...paths.map((p) => p.children[0]!.text), 'failed step', 'event']);
  });

  it('puts the first sample on the left edge at 0 and the last on the right edge', () => {
    const svg = parseXml(renderChart([SINGLE]));
    const saved = all(svg, (e) => e.name === 'path')[0]!.attrs.d!;
    const axis = group(svg, 'axes')!.children[0]!.attrs; // the time axis
    expect(saved.startsWith(`M${axis.x1} ${axis.y1} `)).toBe(true);
    expect(saved.split(' L').pop()!.split(' ')[0]).toBe(axis.x2);
  });

  it('draws a long flat stretch with two points, not one per sample', () => {
    const flat = ramp(60_000, 0, 61);
    const d = all(parseXml(renderChart([flat])), (e) => e.name === 'path')[1]!.attrs.d!;
    expect(d.match(/[ML]/g)!.length).toBe(2);
  });
});

describe('renderChart: axes', () => {
  it('labels a 5 min run in whole minutes and a 2 GiB host in 0.5 GiB steps', () => {
    const svg = parseXml(renderChart([FIXED, TUNED]));
    expect(tickLabels(svg)).toEqual({ x: ['0', '1', '2', '3', '4', '5'], y: ['0', '0.5', '1', '1.5', '2'] });
    const titles = all(svg, (e) => e.attrs.class === 'axis-title').map((e) => e.text);
    expect(titles).toEqual(['simulated time (min)', 'memory (GiB)']);
  });

  it('uses seconds for a 90 s run, hours for a 3 h one, GiB from 2 GiB up', () => {
    const short = parseXml(renderChart([ramp(90_000, 2.5 * 1024 ** 3)]));
    expect(tickLabels(short)).toEqual({ x: ['0', '20', '40', '60', '80'], y: ['0', '0.5', '1', '1.5', '2', '2.5'] });
    expect(tickLabels(parseXml(renderChart([ramp(90_000, 3.5 * 1024 ** 3)]))).y).toEqual(['0', '1', '2', '3', '4']);
    const long = parseXml(renderChart([ramp(3 * 3_600_000, 300 * 1024 ** 2)]));
    expect(tickLabels(long)).toEqual({ x: ['0', '0.5', '1', '1.5', '2', '2.5', '3'], y: ['0', '50', '100', '150', '200', '250', '300'] });
    const titles = all(long, (e) => e.attrs.class === 'axis-title').map((e) => e.text);
    expect(titles).toEqual(['simulated time (h)', 'memory (MiB)']);
  });

  it('tick labels are round numbers: evenly spaced by 1, 2 or 5 × 10^k', () => {
    const cases = [[SINGLE], [FIXED, TUNED], [ramp(7_000, 123_456_789)], [ramp(45 * 60_000, 17 * 1024 ** 3)], [ramp(999, 3_000)]];
    for (const results of cases) {
      const { x, y } = tickLabels(parseXml(renderChart(results)));
      for (const labels of [x, y]) {
        expect(labels.length).toBeGreaterThanOrEqual(2);
        for (const l of labels) expect(l).toMatch(/^(0|[1-9]\d*)(\.\d+)?$/);
        const values = labels.map(Number);
        const step = values[1]! - values[0]!;
        const mantissa = Number((step / 10 ** Math.floor(Math.log10(step))).toFixed(6));
        expect([1, 2, 5]).toContain(mantissa);
        values.forEach((v, i) => expect(v).toBeCloseTo(i * step, 9));
      }
    }
  });
});

describe('renderChart: text and errors', () => {
  it('escapes <, & and > in the title, in labels and in error tooltips', () => {
    const weird: RunResult = {
      ...FIXED,
      variant: 'a<b>&c',
      events: [ev(1000, 'pressure <huge>', 'ENOMEM: "x" & \'y\'')],
    };
    const text = renderChart([weird, TUNED], { title: 'KSM <on> & off' });
    const svg = parseXml(text);
    expect(text).toContain('<title>KSM &lt;on&gt; &amp; off</title>');
    expect(text).not.toContain('<on>');
    expect(unescape(all(svg, (e) => e.name === 'path')[0]!.children[0]!.text)).toBe('a<b>&c: memory saved');
    const tip = group(svg, 'errors')!.children[0]!.children[0]!.text;
    expect(unescape(tip)).toBe('a<b>&c: 1s: pressure <huge>: ENOMEM: "x" & \'y\'');
  });

  it('drops characters XML cannot hold', () => {
    const svg = parseXml(renderChart([SINGLE], { title: 'bell\u0007 and \ud800 lone surrogate' }));
    expect(svg.children[0]!.text).toBe('bell and  lone surrogate');
  });

  it('marks each failed event with a red tick on the time axis at its time, with a tooltip', () => {
    const svg = parseXml(renderChart([SINGLE]));
    const errors = group(svg, 'errors')!;
    expect(errors.attrs.stroke).toBe('#d00000');
    expect(errors.children).toHaveLength(1);
    const tick = errors.children[0]!;
    // 1min 30s: halfway between the 1 and 2 min ticks, across the axis line.
    const ticks = group(svg, 'ticks')!.children.filter((t) => t.attrs['text-anchor'] === 'middle');
    expect([ticks[1]!.text, ticks[2]!.text]).toEqual(['1', '2']);
    expect(Number(tick.attrs.x1)).toBeCloseTo((Number(ticks[1]!.attrs.x) + Number(ticks[2]!.attrs.x)) / 2, 0);
    expect(tick.attrs.x2).toBe(tick.attrs.x1);
    const axisY = Number(group(svg, 'axes')!.children[0]!.attrs.y1);
    // 5 px either side of the axis line.
    expect(Number(tick.attrs.y1)).toBeCloseTo(axisY - 5, 6);
    expect(Number(tick.attrs.y2)).toBeCloseTo(axisY + 5, 6);
    expect(tick.children[0]!.text).toBe('1min 30s: pressure 512 MiB: ENOMEM: out of memory: wanted 131072 pages, 98304 free and 0 reclaimable');
  });

  it('has no error group when nothing failed', () => {
    expect(group(parseXml(renderChart([TUNED])), 'errors')).toBeUndefined();
  });

  it('titles the chart after the scenario by default', () => {
    expect(parseXml(renderChart([FIXED, TUNED])).children[0]!.text).toBe('web-pair: memory saved and free');
  });
});

describe('renderChart: markers', () => {
  it('marks actions at the top, governor changes with a triangle, OOM kills and refused starts with a red line across the plot', () => {
    const r: RunResult = {
      ...SINGLE,
      events: [
        ev(0, 'start web-1', null, 'action', 'web-1'),
        ev(0, 'start web-2', null, 'action', 'web-2'),
        ev(0, 'web-1 booted', null, 'guest', 'web-1'),
        ev(60_000, 'ksmtuned: boost, pages_to_scan 300, sleep_millisecs 160', null, 'governor'),
        ev(90_000, 'ksmtuned: stop ksmd', null, 'governor-idle'),
        ev(120_000, 'Out of memory: killed qemu:web-2 (guest web-2, 1 GiB resident+swap)', null, 'oom-kill', 'web-2'),
        ev(150_000, 'start web-2', 'ENOMEM: no room', 'refused', 'web-2'),
      ],
    };
    const svg = parseXml(renderChart([r]));
    const marks = group(svg, 'markers')!.children;
    // One action marker for the two starts at 0 (one tooltip, both lines); no marker for
    // a guest's own progress or a governor that changed nothing.
    expect(marks.map((m) => [m.name, m.attrs.class, unescape(m.children[0]!.text)])).toEqual([
      ['line', 'action', '0s: start web-1\nstart web-2'],
      ['path', 'governor', '1min: ksmtuned: boost, pages_to_scan 300, sleep_millisecs 160'],
      ['line', 'oom', '2min: Out of memory: killed qemu:web-2 (guest web-2, 1 GiB resident+swap)'],
      ['line', 'oom', '2min 30s: start web-2: ENOMEM: no room'],
    ]);
    // The OOM line spans the plot at its time: 2 min of 5 along the time axis.
    const axis = group(svg, 'axes')!.children[0]!.attrs;
    const oom = marks[2]!.attrs;
    expect(Number(oom.x1)).toBeCloseTo(Number(axis.x1) + ((Number(axis.x2) - Number(axis.x1)) * 2) / 5, 0);
    expect([oom.y1, oom.y2]).toEqual([group(svg, 'axes')!.children[1]!.attrs.y1, axis.y1]);
    const legend = group(svg, 'legend')!.children.filter((e) => e.name === 'text').map((e) => e.text);
    expect(legend.slice(-4)).toEqual(['failed step', 'event', 'governor change', 'OOM kill / refused start']);
  });

  it('has no marker group when nothing happened', () => {
    expect(group(parseXml(renderChart([{ ...SINGLE, events: [] }])), 'markers')).toBeUndefined();
  });
});
