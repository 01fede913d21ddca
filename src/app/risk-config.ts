import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../config.ts';
import { DEFAULT_POLICY } from '../domain/default-policy.ts';
import { parsePolicy, type RiskPolicy } from '../domain/policy.ts';
import { parseSdnCsv, type SanctionsList, type ScreeningResult, screenName } from '../domain/sanctions.ts';
import type { PiiCipher } from '../security/pii-cipher.ts';
import type { CustomerRow } from '../storage/store.ts';
import type { Screening } from './risk-assessment.ts';

/**
 * Loads the risk policy (RISK_POLICY_PATH, else the built-in seed policy) and the sanctions list
 * (SANCTIONS_LIST_PATH, else the synthetic sample shipped in config/sanctions). A bad file stops start-up with
 * one line naming the variable.
 */
export const SAMPLE_SANCTIONS_LIST = fileURLToPath(
  new URL('../../config/sanctions/sdn-sample.csv', import.meta.url),
);
const SCREENING_CACHE_MAX = 100_000;

export function loadRiskPolicy(path: string | null): RiskPolicy {
  if (path === null) return DEFAULT_POLICY;
  try {
    return parsePolicy(JSON.parse(readFileSync(path, 'utf8')), path);
  } catch (error) {
    throw new ConfigError('RISK_POLICY_PATH', (error as Error).message);
  }
}

export function loadSanctionsList(path: string | null): SanctionsList {
  const file = path ?? SAMPLE_SANCTIONS_LIST;
  try {
    return parseSdnCsv(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError('SANCTIONS_LIST_PATH', `${file}: ${(error as Error).message}`);
  }
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
        return { scoreBp: customer.sanctionsScoreBp, entryId: customer.sanctionsEntryId };
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
