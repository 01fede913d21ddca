import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The risk policy every benchmark runs (`npm run bench`, `npm run bench:pipeline`): the seed policy
 * (config/risk-policy.example.json) with its two per-minute fraud rules (velocity, repeated pattern) set out of
 * reach. The load generator is one client sending ~1,000 payments/s between a few accounts, which those rules
 * rightly send to review; whether they do depends on accounts ÷ rate, so the small and the 1M-account cases
 * would take different paths (hold vs. posting) and not be comparable. Every rule still runs and every counter
 * is still read and written: only the outcome is the same, `posted`, the path that writes the most.
 */
export const SEED_POLICY_FILE = 'config/risk-policy.example.json';
export const OUT_OF_REACH_RULES = ['velocity', 'repeated_pattern'] as const;
export const BENCH_POLICY_DESCRIPTION = `${SEED_POLICY_FILE} with ${OUT_OF_REACH_RULES.join(' and ')} out of reach (every payment posts)`;

/** Writes the bench policy to a temp file and returns its path (for RISK_POLICY_PATH). */
export function benchPolicyPath(): string {
  const policy = JSON.parse(readFileSync(SEED_POLICY_FILE, 'utf8')) as {
    version: string;
    rules: { id: string; all?: { value: unknown }[] }[];
  };
  for (const rule of policy.rules) {
    if ((OUT_OF_REACH_RULES as readonly string[]).includes(rule.id)) rule.all![0]!.value = 1_000_000_000;
  }
  policy.version = `${policy.version}-bench`;
  const path = join(mkdtempSync(join(tmpdir(), 'payments-bench-policy-')), 'risk-policy.json');
  writeFileSync(path, JSON.stringify(policy));
  return path;
}
