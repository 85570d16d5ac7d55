/**
 * The progress bar `samepage run` draws on stderr while a scenario runs:
 *
 *   [#############.................]  45%  web-fleet [ksmtuned]
 *
 * It is drawn only on a terminal (a file or a pipe gets nothing, so logs and CI output
 * stay clean), redrawn in place with '\r', at most about ten times per wall-clock
 * second however often the run reports progress, and erased by done() so the summary
 * that follows starts on a clean line. Reading the clock is fine here: src/report is
 * above the deterministic core, and nothing it draws reaches a result.
 */

/**
 * One line: `[`, `width` cells of '#' (done) and '.' (to do), `]`, the percentage right-
 * aligned in four columns, two spaces and the label (nothing after the percentage when
 * the label is empty). `fraction` is clamped to [0, 1]; NaN counts as 0. Cells and
 * percent round down, so the bar is full and says 100% only when the work is.
 *
 *   formatProgress(0.45, 20, 'web') === '[#########...........]  45%  web'
 */
export function formatProgress(fraction: number, width: number, label: string): string {
  const f = Number.isNaN(fraction) ? 0 : Math.min(1, Math.max(0, fraction));
  const cells = Math.max(0, Math.floor(width));
  const done = Math.floor(f * cells + 1e-9);
  const percent = Math.floor(f * 100 + 1e-9);
  const bar = `[${'#'.repeat(done)}${'.'.repeat(cells - done)}] ${`${percent}%`.padStart(4)}`;
  return label === '' ? bar : `${bar}  ${label}`;
}

export interface ProgressBarOptions {
  /** Cells in the bar. Default 30. */
  width?: number;
  /** Wall-clock milliseconds; default Date.now. Tests pass a fake one. */
  now?: () => number;
}

/** Redraws closer together than this are skipped (about ten a second). */
const MIN_REDRAW_MS = 100;
/** ESC [ K: erase from the cursor to the end of the line. Every terminal Node calls a TTY understands it. */
const ERASE_TO_EOL = '\x1b[K';

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly width: number;
  private readonly now: () => number;
  /** Whether to draw at all: fixed at construction, as the stream cannot become a terminal. */
  private readonly tty: boolean;
  /** The line on screen, '' when none (never drawn, or erased by done()). */
  private shown: string;
  /** When `shown` was drawn; -Infinity before the first draw, so the first update always draws. */
  private drawnAt: number;

  constructor(stream: NodeJS.WriteStream, opts: ProgressBarOptions = {}) {
    this.stream = stream;
    this.width = opts.width ?? 30;
    this.now = opts.now ?? Date.now;
    this.tty = stream.isTTY === true;
    this.shown = '';
    this.drawnAt = -Infinity;
  }

  /** Show `fraction` done with `label`: drawn now unless the last redraw was under 100 ms ago or the line would not change. */
  update(fraction: number, label: string): void {
    if (!this.tty) return;
    const now = this.now();
    if (now - this.drawnAt < MIN_REDRAW_MS) return;
    const line = this.fit(formatProgress(fraction, this.width, label));
    if (line === this.shown) return;
    this.stream.write(`\r${line}${ERASE_TO_EOL}`);
    this.shown = line;
    this.drawnAt = now;
  }

  /** Erase the bar, leaving the cursor at the start of an empty line. The bar can be used again after. */
  done(): void {
    if (!this.tty) return;
    if (this.shown !== '') this.stream.write(`\r${ERASE_TO_EOL}`);
    this.shown = '';
    this.drawnAt = -Infinity;
  }

  /**
   * Cut the line to one column less than the terminal's width: a line that reaches the
   * last column wraps on some terminals, and '\r' then returns only to the start of the
   * second half, leaving a trail of bars behind.
   */
  private fit(line: string): string {
    const columns = this.stream.columns;
    if (typeof columns !== 'number' || columns < 2) return line;
    const chars = Array.from(line);
    return chars.length < columns ? line : chars.slice(0, columns - 1).join('').trimEnd();
  }
}
