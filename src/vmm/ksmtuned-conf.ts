import { ConfigError, type ConfigProblem } from './config.js';
import { KSMTUNED_DEFAULTS, type KsmtunedConfig } from './ksmtuned.js';
import { splitAssignment, splitShell } from './shell.js';

/**
 * `/etc/ksmtuned.conf`, read as the ksmtuned script reads it.
 *
 * The script (ksmtuned/ksmtuned, commit 018d0ed5876aee27b106c46c8889780d89ddcca2,
 * src/ksmtuned.sh.in; the same text as Fedora/RHEL's `ksm` package ships) does
 *
 *     if [ -f /etc/ksmtuned.conf ]; then . /etc/ksmtuned.conf; fi
 *     KSM_MONITOR_INTERVAL=${KSM_MONITOR_INTERVAL:-60}
 *     ...
 *
 * so the file is shell: `NAME=value` assignments (quoted or not, `export` allowed),
 * comments, several per line with `;`; the last assignment wins; and an empty value
 * means the default (`${VAR:-default}` substitutes for unset *and* empty). The
 * shipped file (data/ksmtuned.conf, same commit) names every variable the script
 * reads, commented out at its default, plus LOGFILE and DEBUG.
 *
 * What the script would not survive, or would do silently wrong, is a problem here,
 * with its line: an unknown variable (a typo leaves the default in force without a
 * word), a value that is not a whole number (bash arithmetic would read a word as
 * another variable's name, usually 0), a leading zero (`$[ ]` reads 064 as octal 52
 * while `[ -lt ]` reads it as 64), an expansion we cannot evaluate, anything that is
 * not an assignment, and settings that make the script misbehave (an interval under
 * 1 s loops without sleeping; npages outside 0..UINT_MAX is refused by the kernel's
 * pages_to_scan; a minimum above the maximum pins pages_to_scan at the minimum).
 */

/** The variables the script reads, with the KsmtunedConfig field each sets. */
export const KSMTUNED_CONF_VARIABLES: Readonly<Record<string, keyof KsmtunedConfig>> = {
  KSM_MONITOR_INTERVAL: 'monitorInterval',
  KSM_NPAGES_BOOST: 'npagesBoost',
  KSM_NPAGES_DECAY: 'npagesDecay',
  KSM_NPAGES_MIN: 'npagesMin',
  KSM_NPAGES_MAX: 'npagesMax',
  KSM_SLEEP_MSEC: 'sleepMsec',
  KSM_THRES_COEF: 'thresCoef',
  KSM_THRES_CONST: 'thresConst',
};

/** Variables the script reads that change nothing the model shows (its log, its pid file). */
const WITHOUT_EFFECT = new Set(['LOGFILE', 'DEBUG', 'PIDFILE']);

const UINT_MAX = 4294967295;

export interface KsmtunedConf {
  /** The settings the file makes (an empty value is left out: the default applies). */
  readonly config: Partial<KsmtunedConfig>;
  /** The line of the assignment in force for each variable set (empty ones included). */
  readonly lines: Readonly<Record<string, number>>;
}

/** Parse ksmtuned.conf text; throws ConfigError listing every problem with its line. */
export function parseKsmtunedConf(text: string, file: string): KsmtunedConf {
  const problems: ConfigProblem[] = [];
  const at = (line: number, field: string, message: string): void => {
    problems.push({ line, field, message });
  };
  const { commands, problems: syntax } = splitShell(text);
  for (const p of syntax) at(p.line, '', `not valid shell: ${p.message}`);

  const config: Partial<Record<keyof KsmtunedConfig, number>> = {};
  const lines: Record<string, number> = {};
  const known = Object.keys(KSMTUNED_CONF_VARIABLES).join(', ');
  for (const words of commands) {
    const first = words[0]!;
    const rest = first.text === 'export' && !first.quoted ? words.slice(1) : words;
    for (const w of rest) {
      const a = splitAssignment(w);
      if (a === null) {
        at(w.line, '', `${JSON.stringify(w.text)} is not an assignment: ksmtuned sources this file, and only NAME=value settings are understood`);
        // One message per command: the words after a command name are its arguments.
        break;
      }
      const field = KSMTUNED_CONF_VARIABLES[a.name];
      if (field === undefined) {
        if (!WITHOUT_EFFECT.has(a.name)) at(w.line, a.name, `unknown variable (ksmtuned reads ${known}, LOGFILE, DEBUG and PIDFILE)`);
        continue;
      }
      lines[a.name] = w.line;
      if (w.expands) {
        at(w.line, a.name, `expected a whole number, got ${JSON.stringify(a.value)}: expansions are not evaluated here`);
        continue;
      }
      if (a.value === '') {
        // ${VAR:-default}: empty means the default.
        delete config[field];
        continue;
      }
      if (!/^-?\d+$/.test(a.value)) {
        at(w.line, a.name, `expected a whole number, got ${JSON.stringify(a.value)}`);
        continue;
      }
      if (/^-?0\d/.test(a.value)) {
        at(w.line, a.name, `${a.value} has a leading zero: bash arithmetic would read it as octal; write it without`);
        continue;
      }
      const v = Number(a.value);
      if (!Number.isSafeInteger(v)) {
        at(w.line, a.name, `expected a whole number bash can hold, got ${a.value}`);
        continue;
      }
      config[field] = v;
    }
  }

  // Settings that parse but that the script could not run with.
  const c = { ...KSMTUNED_DEFAULTS, ...config };
  const lineOf = (name: string): number => lines[name] ?? 0;
  if (config.monitorInterval !== undefined && c.monitorInterval < 1) {
    at(lineOf('KSM_MONITOR_INTERVAL'), 'KSM_MONITOR_INTERVAL', `expected 1 (second) or more, got ${c.monitorInterval}: the script would adjust again at once, forever`);
  }
  for (const name of ['KSM_NPAGES_MIN', 'KSM_NPAGES_MAX'] as const) {
    const v = c[KSMTUNED_CONF_VARIABLES[name]!];
    if (config[KSMTUNED_CONF_VARIABLES[name]!] !== undefined && (v < 0 || v > UINT_MAX)) {
      at(lineOf(name), name, `expected 0 to 4294967295 (UINT_MAX): the kernel refuses other pages_to_scan values, got ${v}`);
    }
  }
  if ((config.npagesMin !== undefined || config.npagesMax !== undefined) && c.npagesMin > c.npagesMax && c.npagesMin <= UINT_MAX && c.npagesMax >= 0) {
    const name = config.npagesMin !== undefined ? 'KSM_NPAGES_MIN' : 'KSM_NPAGES_MAX';
    at(lineOf(name), name, `KSM_NPAGES_MIN (${c.npagesMin}) is above KSM_NPAGES_MAX (${c.npagesMax}): pages_to_scan would be pinned at the minimum`);
  }
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line);
    throw new ConfigError(file, problems);
  }
  return { config, lines };
}
