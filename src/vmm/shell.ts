/**
 * Splitting text into words as a POSIX shell does, for the two operator files that are
 * shell: `/etc/ksmtuned.conf` (which ksmtuned sources with `.`) and a QEMU command line
 * saved to a file (as libvirt writes it to /var/log/libvirt/qemu/NAME.log, one option
 * per line, continued with backslashes).
 *
 * Only word splitting and quote removal are done, never expansion: `$X`, `${X}` and
 * backquotes are kept as written and the word is marked `expands`, so that a caller can
 * say "this value is not a number we can read" instead of guessing what the shell would
 * have substituted. Each word remembers the line it starts on, for file:line messages.
 *
 * Rules followed (POSIX "Token Recognition", "Quoting"):
 *  - unquoted blanks separate words; an unquoted newline or `;` ends a command;
 *  - `#` at the start of a word starts a comment to the end of the line;
 *  - `\` outside quotes keeps the next character; `\` + newline is removed (a line
 *    continuation);
 *  - '...' keeps everything literally, newlines included;
 *  - "..." keeps everything but `\` before `$`, `` ` ``, `"`, `\` or newline.
 * The other control operators (`&&`, `|`, `&`, `(`, `)`, redirections) are not
 * understood here; a word made of them is marked `operator` so the caller can refuse
 * it with its line.
 *
 * The road not taken: `shell-quote` from npm splits words well but keeps no positions,
 * and messages here must name the line.
 */

export interface ShellWord {
  /** The word after quote removal. */
  readonly text: string;
  /** 1-based line where the word starts. */
  readonly line: number;
  /** Some part was quoted (so `''` is an empty word, not no word). */
  readonly quoted: boolean;
  /** An unquoted or double-quoted `$` or backquote: the shell would have expanded it. */
  readonly expands: boolean;
  /** An unquoted control operator or redirection (`|`, `&`, `&&`, `(`, `)`, `<`, `>`). */
  readonly operator: boolean;
}

/** A problem the shell itself would report, such as an unterminated quote. */
export interface ShellSyntaxProblem {
  readonly line: number;
  readonly message: string;
}

export interface ShellParse {
  /** Simple commands in order: each a non-empty list of words. */
  readonly commands: ShellWord[][];
  readonly problems: ShellSyntaxProblem[];
}

const BLANK = /[ \t\r]/;
const OPERATOR_CHARS = /[|&()<>]/;

/** Split `text` into commands of words (see the module comment for the rules). */
export function splitShell(text: string): ShellParse {
  const commands: ShellWord[][] = [];
  const problems: ShellSyntaxProblem[] = [];
  let words: ShellWord[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;

  const endCommand = (): void => {
    if (words.length > 0) commands.push(words);
    words = [];
  };

  while (i < n) {
    const c = text[i]!;
    if (BLANK.test(c)) {
      i++;
      continue;
    }
    if (c === '\n') {
      line++;
      i++;
      endCommand();
      continue;
    }
    if (c === ';') {
      i++;
      endCommand();
      continue;
    }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '\\' && text[i + 1] === '\n') {
      // A continuation between words: the command goes on on the next line.
      i += 2;
      line++;
      continue;
    }
    if (OPERATOR_CHARS.test(c)) {
      const start = line;
      let op = '';
      while (i < n && OPERATOR_CHARS.test(text[i]!)) op += text[i++]!;
      words.push({ text: op, line: start, quoted: false, expands: false, operator: true });
      continue;
    }
    // A word: runs until an unquoted blank, newline, `;` or operator character.
    const start = line;
    let out = '';
    let quoted = false;
    let expands = false;
    while (i < n) {
      const d = text[i]!;
      if (BLANK.test(d) || d === '\n' || d === ';' || OPERATOR_CHARS.test(d)) break;
      if (d === '\\') {
        const next = text[i + 1];
        if (next === undefined) {
          i++;
          break;
        }
        if (next === '\n') {
          line++;
        } else {
          out += next;
          quoted = true;
        }
        i += 2;
        continue;
      }
      if (d === "'") {
        quoted = true;
        const close = text.indexOf("'", i + 1);
        if (close < 0) {
          problems.push({ line: start, message: "unterminated single quote (no closing ')" });
          i = n;
          break;
        }
        const inner = text.slice(i + 1, close);
        out += inner;
        line += countNewlines(inner);
        i = close + 1;
        continue;
      }
      if (d === '"') {
        quoted = true;
        i++;
        let closed = false;
        while (i < n) {
          const e = text[i]!;
          if (e === '"') {
            closed = true;
            i++;
            break;
          }
          if (e === '\\' && i + 1 < n && '$`"\\\n'.includes(text[i + 1]!)) {
            if (text[i + 1] === '\n') line++;
            else out += text[i + 1]!;
            i += 2;
            continue;
          }
          if (e === '$' || e === '`') expands = true;
          if (e === '\n') line++;
          out += e;
          i++;
        }
        if (!closed) {
          problems.push({ line: start, message: 'unterminated double quote (no closing ")' });
          break;
        }
        continue;
      }
      if (d === '$' || d === '`') expands = true;
      out += d;
      i++;
    }
    words.push({ text: out, line: start, quoted, expands, operator: false });
  }
  endCommand();
  return { commands, problems };
}

function countNewlines(s: string): number {
  let k = 0;
  for (let j = 0; j < s.length; j++) if (s.charCodeAt(j) === 10) k++;
  return k;
}

/** `NAME=value` with a shell variable name before the `=`, or null. */
export function splitAssignment(word: ShellWord): { name: string; value: string } | null {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(word.text);
  if (m === null || word.operator) return null;
  return { name: m[1]!, value: word.text.slice(m[0].length) };
}
