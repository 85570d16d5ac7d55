import { describe, expect, it } from 'vitest';
import { KSMTUNED_DEFAULTS, Ksmtuned } from '../../src/vmm/ksmtuned.js';

// The script's figures for a 2 GiB host: MemTotal 2097152 kB.
const TOTAL_2G = 2 * 1024 * 1024;

describe('ksmtuned: the figures it derives at start', () => {
  it('sleep = KSM_SLEEP_MSEC × 16 GiB / MemTotal: 80 ms on a 2 GiB host', () => {
    expect(new Ksmtuned({}, TOTAL_2G).sleep).toBe(80);
  });

  it('sleep is 160 ms on 1 GiB, 10 on 16 GiB, and never below 10 (32 GiB would give 5)', () => {
    expect(new Ksmtuned({}, 1024 * 1024).sleep).toBe(160);
    expect(new Ksmtuned({}, 16 * 1024 * 1024).sleep).toBe(10);
    expect(new Ksmtuned({}, 32 * 1024 * 1024).sleep).toBe(10);
  });

  it('sleep truncates like bash $[ ]: 3 GiB gives 53 (53.33)', () => {
    expect(new Ksmtuned({}, 3 * 1024 * 1024).sleep).toBe(53);
  });

  it('thres = MemTotal × KSM_THRES_COEF / 100, truncated: 419430 kB on 2 GiB', () => {
    expect(new Ksmtuned({}, TOTAL_2G).thres).toBe(419430);
  });

  it('thres is at least KSM_THRES_CONST (2048 kB): an 8 MiB host gets 2048, not 1638', () => {
    expect(new Ksmtuned({}, 8192).thres).toBe(2048);
  });

  it('the defaults are the script’s', () => {
    expect(KSMTUNED_DEFAULTS).toEqual({
      monitorInterval: 60,
      npagesBoost: 300,
      npagesDecay: -50,
      npagesMin: 64,
      npagesMax: 1250,
      sleepMsec: 10,
      thresCoef: 20,
      thresConst: 2048,
    });
  });
});

describe('ksmtuned: adjust(), step by step', () => {
  it('stops ksmd while committed + thres < total and free > thres; npages stays 0', () => {
    const t = new Ksmtuned({}, TOTAL_2G);
    expect(t.adjust(1_500_000, 500_000)).toEqual({ action: 'stop', free: 1_500_000, committed: 500_000 });
    expect(t.npages).toBe(0);
  });

  it('boosts by 300 while free < thres, clamped at KSM_NPAGES_MAX', () => {
    const t = new Ksmtuned({}, TOTAL_2G);
    const seen = Array.from({ length: 6 }, () => t.adjust(300_000, 1_900_000));
    expect(seen).toEqual([300, 600, 900, 1200, 1250, 1250].map((npages) => ({ action: 'boost', free: 300_000, committed: 1_900_000, npages, sleep: 80 })));
  });

  it('decays by 50 once free > thres but memory is still committed', () => {
    const t = new Ksmtuned({}, TOTAL_2G);
    for (let i = 0; i < 5; i++) t.adjust(300_000, 1_900_000);
    expect(t.npages).toBe(1250);
    const d = t.adjust(500_000, 1_900_000);
    expect(d).toEqual({ action: 'decay', free: 500_000, committed: 1_900_000, npages: 1200, sleep: 80 });
  });

  it('free exactly at thres neither stops (not > thres) nor boosts (not < thres): it decays', () => {
    const t = new Ksmtuned({}, TOTAL_2G);
    t.adjust(300_000, 1_900_000);
    expect(t.adjust(419430, 0)).toEqual({ action: 'decay', free: 419430, committed: 0, npages: 250, sleep: 80 });
  });

  it('the first start after a decay decision is clamped up to KSM_NPAGES_MIN (0 − 50 → 64)', () => {
    const t = new Ksmtuned({}, TOTAL_2G);
    const d = t.adjust(500_000, 1_900_000);
    expect(d).toEqual({ action: 'decay', free: 500_000, committed: 1_900_000, npages: 64, sleep: 80 });
  });

  it('decay never goes below KSM_NPAGES_MIN: 100 → 64', () => {
    const t = new Ksmtuned({ npagesBoost: 100 }, TOTAL_2G);
    t.adjust(300_000, 1_900_000);
    expect(t.npages).toBe(100);
    expect(t.adjust(500_000, 1_900_000)).toEqual({ action: 'decay', free: 500_000, committed: 1_900_000, npages: 64, sleep: 80 });
  });

  it('a stop keeps npages: the next start continues from where it was', () => {
    const t = new Ksmtuned({}, TOTAL_2G);
    t.adjust(300_000, 1_900_000);
    t.adjust(300_000, 1_900_000);
    expect(t.adjust(1_500_000, 100_000)).toEqual({ action: 'stop', free: 1_500_000, committed: 100_000 });
    expect(t.npages).toBe(600);
    expect(t.adjust(300_000, 1_900_000)).toEqual({ action: 'boost', free: 300_000, committed: 1_900_000, npages: 900, sleep: 80 });
  });

  it('configuration overrides the defaults (ksmtuned.conf)', () => {
    const t = new Ksmtuned({ npagesBoost: 1000, npagesMax: 5000, thresCoef: 50, sleepMsec: 20 }, TOTAL_2G);
    expect(t.thres).toBe(1048576);
    expect(t.sleep).toBe(160);
    // free 1000000 kB < thres 1048576 kB: boost, by the configured 1000.
    expect(t.adjust(1_000_000, 0)).toEqual({ action: 'boost', free: 1_000_000, committed: 0, npages: 1000, sleep: 160 });
  });
});

describe('ksmtuned: a configuration that cannot run is refused', () => {
  it('a monitor interval under 1 s (0 would never let time move), a fraction, npages_min above npages_max', () => {
    expect(() => new Ksmtuned({ monitorInterval: 0 }, TOTAL_2G)).toThrow('EINVAL: ksmtuned: monitorInterval must be 1 second or more, got 0');
    expect(() => new Ksmtuned({ npagesBoost: 1.5 }, TOTAL_2G)).toThrow('EINVAL: ksmtuned: npagesBoost must be a whole number, got 1.5');
    expect(() => new Ksmtuned({ npagesMin: 2000 }, TOTAL_2G)).toThrow('EINVAL: ksmtuned: expected 0 <= npagesMin <= npagesMax, got npagesMin 2000, npagesMax 1250');
  });
});
