import { Ajv } from 'ajv';
import { type Static, Type } from 'typebox';
import { compactSkeleton } from './canonical-text.ts';
import { isCountryCode } from './iso-codes.ts';
import type { RuleHit } from './types.ts';

/**
 * The risk policy as data: ordered rules with an outcome (decline, review, allow), a reason code and
 * conditions over named features. Evaluation is pure. Precedence: any decline wins; otherwise an allow rule
 * suppresses reviews; otherwise any review sends the payment to manual review. The score is the sum of the
 * fired rules' weights, capped at 100.
 */
export const FEATURE_VALUE = Type.Union([Type.Number(), Type.String(), Type.Boolean()]);
export type FeatureValue = Static<typeof FEATURE_VALUE>;
export type Features = Record<string, FeatureValue>;

const Condition = Type.Object(
  {
    feature: Type.String({ minLength: 1 }),
    op: Type.Union([
      Type.Literal('>='),
      Type.Literal('>'),
      Type.Literal('<='),
      Type.Literal('<'),
      Type.Literal('=='),
      Type.Literal('!='),
      Type.Literal('in'),
      Type.Literal('notIn'),
    ]),
    value: Type.Union([FEATURE_VALUE, Type.Array(Type.Union([Type.Number(), Type.String()]))]),
  },
  { additionalProperties: false },
);
export type Condition = Static<typeof Condition>;

const Rule = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }),
    outcome: Type.Union([Type.Literal('decline'), Type.Literal('review'), Type.Literal('allow')]),
    reason: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }),
    score: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
    all: Type.Optional(Type.Array(Condition, { minItems: 1 })),
    any: Type.Optional(Type.Array(Condition, { minItems: 1 })),
  },
  { additionalProperties: false },
);
export type PolicyRule = Static<typeof Rule>;

const Cents = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const KycTier = Type.Object(
  { perPaymentCents: Cents, dailyCents: Cents, monthlyCents: Cents },
  { additionalProperties: false },
);
export type KycTier = Static<typeof KycTier>;

export const PolicySchema = Type.Object(
  {
    version: Type.String({ minLength: 1, maxLength: 64 }),
    highRiskCountries: Type.Array(Type.String({ pattern: '^[A-Z]{2}$' })),
    suspiciousNoteTerms: Type.Array(Type.String({ minLength: 1 })),
    sanctions: Type.Object(
      {
        declineScore: Type.Number({ minimum: 0, maximum: 1 }),
        reviewScore: Type.Number({ minimum: 0, maximum: 1 }),
      },
      { additionalProperties: false },
    ),
    structuring: Type.Object(
      { thresholdCents: Cents, bandStartPercent: Type.Integer({ minimum: 1, maximum: 99 }) },
      { additionalProperties: false },
    ),
    kycTiers: Type.Record(Type.String({ pattern: '^[a-z0-9_]{1,32}$' }), KycTier),
    defaultKycTier: Type.String(),
    rules: Type.Array(Rule, { minItems: 1, maxItems: 200 }),
  },
  { additionalProperties: false },
);
export type RiskPolicy = Static<typeof PolicySchema>;

const validatePolicy = new Ajv({ allErrors: true, strict: false }).compile(PolicySchema);

/** Validates a parsed policy file; throws one readable error naming every problem. */
export function parsePolicy(value: unknown, source: string): RiskPolicy {
  if (!validatePolicy(value)) {
    const problems = (validatePolicy.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
    throw new Error(`risk policy ${source} is invalid: ${problems.join('; ')}`);
  }
  const policy = value as RiskPolicy;
  const problems: string[] = [];
  if (!Object.hasOwn(policy.kycTiers, policy.defaultKycTier))
    problems.push(`defaultKycTier "${policy.defaultKycTier}" is not a tier`);
  for (const country of policy.highRiskCountries) {
    if (!isCountryCode(country))
      problems.push(`highRiskCountries: "${country}" is not an ISO 3166-1 country`);
  }
  // Terms are compared as skeletons (src/domain/features.ts): one with no letters or digits would match any note.
  for (const term of policy.suspiciousNoteTerms) {
    if (compactSkeleton(term) === '') problems.push(`suspiciousNoteTerms "${term}" has no letters or digits`);
  }
  if (policy.sanctions.reviewScore > policy.sanctions.declineScore)
    problems.push('sanctions.reviewScore > declineScore');
  const ids = new Set<string>();
  for (const rule of policy.rules) {
    if (ids.has(rule.id)) problems.push(`rule id "${rule.id}" is used twice`);
    ids.add(rule.id);
    if (rule.all === undefined && rule.any === undefined)
      problems.push(`rule "${rule.id}" has no conditions`);
  }
  if (problems.length > 0) throw new Error(`risk policy ${source} is invalid: ${problems.join('; ')}`);
  return policy;
}

function holds(condition: Condition, features: Features): boolean {
  // Own properties only: a rule naming "constructor" must not read Object.prototype.constructor.
  const actual = Object.hasOwn(features, condition.feature) ? features[condition.feature] : undefined;
  if (actual === undefined) throw new Error(`policy names an unknown feature "${condition.feature}"`);
  const expected = condition.value;
  switch (condition.op) {
    case '==':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case 'in':
      return Array.isArray(expected) && (expected as FeatureValue[]).includes(actual);
    case 'notIn':
      return Array.isArray(expected) && !(expected as FeatureValue[]).includes(actual);
    default: {
      if (typeof actual !== 'number' || typeof expected !== 'number') return false;
      if (condition.op === '>=') return actual >= expected;
      if (condition.op === '>') return actual > expected;
      if (condition.op === '<=') return actual <= expected;
      return actual < expected;
    }
  }
}

function fires(rule: PolicyRule, features: Features): boolean {
  const all = rule.all === undefined || rule.all.every((c) => holds(c, features));
  const any = rule.any === undefined || rule.any.some((c) => holds(c, features));
  return all && any;
}

/** The features a rule looked at, as it saw them: the explanation recorded with the decision. */
function observed(rule: PolicyRule, features: Features): RuleHit['observed'] {
  const seen: RuleHit['observed'] = {};
  for (const c of [...(rule.all ?? []), ...(rule.any ?? [])]) {
    seen[c.feature] = Object.hasOwn(features, c.feature) ? features[c.feature]! : null;
  }
  return seen;
}

export interface Evaluation {
  outcome: 'posted' | 'manual_review' | 'declined';
  reasons: string[];
  rules: (RuleHit & { score: number })[];
  score: number;
}

export function evaluatePolicy(policy: RiskPolicy, features: Features): Evaluation {
  const fired = policy.rules
    .filter((rule) => fires(rule, features))
    .map((rule) => ({
      rule: rule.id,
      outcome: rule.outcome,
      reason: rule.reason,
      score: rule.score ?? 0,
      observed: observed(rule, features),
      conditions: { all: rule.all ?? [], any: rule.any ?? [] },
    }));
  const declines = fired.filter((r) => r.outcome === 'decline');
  const reviews = fired.filter((r) => r.outcome === 'review');
  const allowed = fired.some((r) => r.outcome === 'allow');
  const score = Math.min(
    100,
    fired.reduce((sum, r) => sum + r.score, 0),
  );
  const reasonsOf = (hits: typeof fired) => [...new Set(hits.map((h) => h.reason))];
  if (declines.length > 0)
    return { outcome: 'declined', reasons: reasonsOf([...declines, ...reviews]), rules: fired, score };
  // An allow rule overrides reviews (never declines); the reviews it overrode stay visible in `rules`.
  if (reviews.length > 0 && !allowed)
    return { outcome: 'manual_review', reasons: reasonsOf(reviews), rules: fired, score };
  return { outcome: 'posted', reasons: [], rules: fired, score };
}
