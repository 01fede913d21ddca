import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../config.ts';
import { DEFAULT_POLICY } from '../domain/default-policy.ts';
import { unknownFeatures } from '../domain/features.ts';
import { parsePolicy, type RiskPolicy } from '../domain/policy.ts';
import {
  parseSanctionsList,
  type SanctionsList,
  type ScreeningResult,
  screenName,
} from '../domain/sanctions.ts';
import type { PiiCipher } from '../security/pii-cipher.ts';
import type { CustomerRow } from '../storage/store.ts';
import type { Screening } from './risk-assessment.ts';

/**
 * Loads the risk policy (RISK_POLICY_PATH, else the built-in seed policy) and the sanctions list
 * (SANCTIONS_LIST_PATH, else the synthetic sample shipped in config/sanctions), with its aliases file when one
 * lies beside it. A bad file stops start-up with one line naming the variable.
 */
export const SAMPLE_SANCTIONS_LIST = fileURLToPath(
  new URL('../../config/sanctions/sdn-sample.csv', import.meta.url),
);
const SCREENING_CACHE_MAX = 100_000;

export function loadRiskPolicy(path: string | null): RiskPolicy {
  try {
    const policy = path === null ? DEFAULT_POLICY : parsePolicy(JSON.parse(readFileSync(path, 'utf8')), path);
    const unknown = unknownFeatures(policy);
    if (unknown.length > 0)
      throw new Error(`risk policy ${path ?? '(built-in)'} names unknown features: ${unknown.join(', ')}`);
    return policy;
  } catch (error) {
    throw new ConfigError('RISK_POLICY_PATH', (error as Error).message);
  }
}

export function loadSanctionsList(path: string | null): SanctionsList {
  const file = path ?? SAMPLE_SANCTIONS_LIST;
  const aliases = aliasesFileOf(file);
  try {
    const altCsv = existsSync(aliases) ? readFileSync(aliases, 'utf8') : null;
    return parseSanctionsList(readFileSync(file, 'utf8'), altCsv);
  } catch (error) {
    throw new ConfigError('SANCTIONS_LIST_PATH', `${file}: ${(error as Error).message}`);
  }
}

/** OFAC publishes aliases as alt.csv beside sdn.csv: "sdn.csv" → "alt.csv", "sdn-sample.csv" → "alt-sample.csv". */
export function aliasesFileOf(sdnFile: string): string {
  const name = basename(sdnFile);
  return join(dirname(sdnFile), /sdn/i.test(name) ? name.replace(/sdn/i, 'alt') : 'alt.csv');
}

/**
 * Screening of customers at payment time. A customer screened at onboarding against the same list keeps that
 * result (stored in the row); otherwise the name is decrypted and screened once per process and list, and
 * the result is cached in memory (bounded). No write happens on the payment path.
 */
export function createScreening(list: SanctionsList, cipher: PiiCipher): Screening {
  const cache = new Map<string, ScreeningResult>();
  return {
    list,
    screen(customer: CustomerRow): ScreeningResult {
      if (customer.sanctionsListSha256 === list.sha256) {
        const { sanctionsScoreBp: scoreBp, sanctionsEntryId: entryId, sanctionsAliasId: aliasId } = customer;
        return { scoreBp, entryId, aliasId };
      }
      const key = `${customer.id}:${list.sha256}`;
      let result = cache.get(key);
      if (result === undefined) {
        result = screenName(list, cipher.decrypt(customer.nameEnc, 'customer.name'));
        if (cache.size >= SCREENING_CACHE_MAX) cache.clear();
        cache.set(key, result);
      }
      return result;
    },
  };
}
