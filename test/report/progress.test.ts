import { describe, expect, it } from 'vitest';
import { ProgressBar, formatProgress } from '../../src/report/progress.js';

describe('formatProgress', () => {
  it('at 0: an empty bar and 0%', () => {
    expect(formatProgress(0, 20, 'web-pair')).toBe('[....................]   0%  web-pair');
  });

  it('at 0.5: half the cells and 50%', () => {
    expect(formatProgress(0.5, 20, 'web-pair [ksmtuned]')).toBe('[##########..........]  50%  web-pair [ksmtuned]');
  });

  it('at 1: a full bar and 100%', () => {
    expect(formatProgress(1, 20, '2min 15s / 5min  web-pair')).toBe('[####################] 100%  2min 15s / 5min  web-pair');
  });

  it('rounds down: 0.999 is 99% with a cell to go, 0.45 of 18 cells is 8; 0.29 is 29% despite 0.29 × 100 < 29', () => {
    expect(formatProgress(0.999, 20, 'x')).toBe('[###################.]  99%  x');
    expect(formatProgress(0.45, 18, 'x')).toBe('[########..........]  45%  x');
    expect(formatProgress(0.29, 10, 'x')).toBe('[##........]  29%  x');
  });

  it('clamps the fraction to [0, 1], and takes NaN as 0', () => {
    expect(formatProgress(-0.5, 10, 'x')).toBe(formatProgress(0, 10, 'x'));
    expect(formatProgress(7, 10, 'x')).toBe(formatProgress(1, 10, 'x'));
    expect(formatProgress(Number.POSITIVE_INFINITY, 10, 'x')).toBe(formatProgress(1, 10, 'x'));
    expect(formatProgress(Number.NaN, 10, 'x')).toBe(formatProgress(0, 10, 'x'));
  });

  it('ends at the percentage when the label is empty', () => {
    expect(formatProgress(0.25, 4, '')).toBe('[#...]  25%');
  });
});

/** A stream that records what is written to it. */
function fakeStream(isTTY: boolean, columns?: number): { stream: NodeJS.WriteStream; written: string[] } {
  const written: string[] = [];
  const stream = {
    isTTY,
    columns,
    write(chunk: string): boolean {
      written.push(chunk);
      return true;
    },
  };
  return { stream: stream as unknown as NodeJS.WriteStream, written };
}

/** A wall clock the test moves by hand. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('ProgressBar', () => {
  it('writes nothing at all when the stream is not a terminal', () => {
    const { stream, written } = fakeStream(false);
    const bar = new ProgressBar(stream, { width: 10 });
    bar.update(0, 'a');
    bar.update(0.5, 'a');
    bar.update(1, 'a');
    bar.done();
    expect(written).toEqual([]);
  });

  it('on a terminal, draws in place with \\r and erases the rest of the line', () => {
    const { stream, written } = fakeStream(true);
    const clock = fakeClock();
    const bar = new ProgressBar(stream, { width: 10, now: clock.now });
    bar.update(0.3, 'web-pair');
    clock.advance(100);
    bar.update(0.6, 'web-pair');
    expect(written).toEqual(['\r[###.......]  30%  web-pair\x1b[K', '\r[######....]  60%  web-pair\x1b[K']);
  });

  it('redraws at most once per 100 ms of wall time', () => {
    const { stream, written } = fakeStream(true);
    const clock = fakeClock();
    const bar = new ProgressBar(stream, { width: 10, now: clock.now });
    for (let i = 0; i <= 100; i++) {
      bar.update(i / 100, 'x');
      clock.advance(10); // 101 updates over about a second
    }
    expect(written).toHaveLength(11);
  });

  it('does not redraw a line that would not change', () => {
    const { stream, written } = fakeStream(true);
    const clock = fakeClock();
    const bar = new ProgressBar(stream, { width: 10, now: clock.now });
    bar.update(0.5, 'x');
    clock.advance(1000);
    bar.update(0.501, 'x');
    expect(written).toHaveLength(1);
  });

  it('done() erases the line it drew, and writes nothing when it drew nothing', () => {
    const { stream, written } = fakeStream(true);
    const bar = new ProgressBar(stream);
    bar.done();
    expect(written).toEqual([]);
    bar.update(0.5, 'x');
    bar.done();
    expect(written).toEqual([`\r${formatProgress(0.5, 30, 'x')}\x1b[K`, '\r\x1b[K']);
  });

  it('after done(), the next update draws at once', () => {
    const { stream, written } = fakeStream(true);
    const clock = fakeClock();
    const bar = new ProgressBar(stream, { width: 4, now: clock.now });
    bar.update(0.5, 'a');
    bar.done();
    bar.update(0.5, 'b');
    expect(written).toEqual(['\r[##..]  50%  a\x1b[K', '\r\x1b[K', '\r[##..]  50%  b\x1b[K']);
  });

  it('keeps the line one column short of the terminal width, so it never wraps', () => {
    const { stream, written } = fakeStream(true, 21);
    const bar = new ProgressBar(stream, { width: 10 });
    bar.update(0.5, 'a long label that would wrap');
    expect(written).toEqual(['\r[#####.....]  50%  a\x1b[K']);
    const narrow = fakeStream(true, 20);
    new ProgressBar(narrow.stream, { width: 10 }).update(0.5, 'a long label');
    expect(narrow.written).toEqual(['\r[#####.....]  50%\x1b[K']);
  });
});
