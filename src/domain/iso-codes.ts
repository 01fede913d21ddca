/**
 * The currency and country codes a client may name. The shape checks (CURRENCY_PATTERN, COUNTRY_PATTERN in
 * money.ts: upper case exactly, no trimming) come first; these sets then refuse well-formed codes that name
 * nothing, such as currency "QQQ" or country "ZZ".
 *
 * Currencies come from the platform: `Intl.supportedValuesOf('currency')`, the ISO 4217 codes in the ICU/CLDR
 * data of the running Node.js (162 on Node 20.20 with full ICU). It holds the circulating currencies and a
 * few special ones in use (XDR, XSU, the CFA and CFP francs), not "no currency" (XXX), "testing" (XTS), the
 * precious metals (XAU, ...) or the fund codes (USN, CLF, ...). A Node.js upgrade may add a new currency or
 * retire an old one: existing accounts keep theirs (reads never check), only new accounts, payments and
 * filters must name a supported one.
 *
 * Countries are a list shipped as data: ICU knows more region codes than ISO 3166-1 has countries
 * (`Intl.DisplayNames` names "ZZ" "Unknown Region", "EU", "EZ", "UN", "QO", the pseudo-locales "XA"/"XB", the
 * exceptionally reserved "AC", "CP", "DG", "EA", "IC", "TA", and maps deprecated codes such as "UK", "SU",
 * "YU", "DD", "BU", "TP", "ZR" to their successors), so the platform cannot say what a country is.
 */

// ISO 3166-1 alpha-2: the 249 officially assigned codes, from Debian's iso-codes 4.15.0
// (/usr/share/iso-codes/json/iso_3166-1.json), which tracks the ISO 3166 Maintenance Agency.
// biome-ignore format: twenty codes per line, in order, easy to compare with the source
const ISO_3166_1_ALPHA_2 = [
  'AD', 'AE', 'AF', 'AG', 'AI', 'AL', 'AM', 'AO', 'AQ', 'AR', 'AS', 'AT', 'AU', 'AW', 'AX', 'AZ', 'BA', 'BB', 'BD', 'BE',
  'BF', 'BG', 'BH', 'BI', 'BJ', 'BL', 'BM', 'BN', 'BO', 'BQ', 'BR', 'BS', 'BT', 'BV', 'BW', 'BY', 'BZ', 'CA', 'CC', 'CD',
  'CF', 'CG', 'CH', 'CI', 'CK', 'CL', 'CM', 'CN', 'CO', 'CR', 'CU', 'CV', 'CW', 'CX', 'CY', 'CZ', 'DE', 'DJ', 'DK', 'DM',
  'DO', 'DZ', 'EC', 'EE', 'EG', 'EH', 'ER', 'ES', 'ET', 'FI', 'FJ', 'FK', 'FM', 'FO', 'FR', 'GA', 'GB', 'GD', 'GE', 'GF',
  'GG', 'GH', 'GI', 'GL', 'GM', 'GN', 'GP', 'GQ', 'GR', 'GS', 'GT', 'GU', 'GW', 'GY', 'HK', 'HM', 'HN', 'HR', 'HT', 'HU',
  'ID', 'IE', 'IL', 'IM', 'IN', 'IO', 'IQ', 'IR', 'IS', 'IT', 'JE', 'JM', 'JO', 'JP', 'KE', 'KG', 'KH', 'KI', 'KM', 'KN',
  'KP', 'KR', 'KW', 'KY', 'KZ', 'LA', 'LB', 'LC', 'LI', 'LK', 'LR', 'LS', 'LT', 'LU', 'LV', 'LY', 'MA', 'MC', 'MD', 'ME',
  'MF', 'MG', 'MH', 'MK', 'ML', 'MM', 'MN', 'MO', 'MP', 'MQ', 'MR', 'MS', 'MT', 'MU', 'MV', 'MW', 'MX', 'MY', 'MZ', 'NA',
  'NC', 'NE', 'NF', 'NG', 'NI', 'NL', 'NO', 'NP', 'NR', 'NU', 'NZ', 'OM', 'PA', 'PE', 'PF', 'PG', 'PH', 'PK', 'PL', 'PM',
  'PN', 'PR', 'PS', 'PT', 'PW', 'PY', 'QA', 'RE', 'RO', 'RS', 'RU', 'RW', 'SA', 'SB', 'SC', 'SD', 'SE', 'SG', 'SH', 'SI',
  'SJ', 'SK', 'SL', 'SM', 'SN', 'SO', 'SR', 'SS', 'ST', 'SV', 'SX', 'SY', 'SZ', 'TC', 'TD', 'TF', 'TG', 'TH', 'TJ', 'TK',
  'TL', 'TM', 'TN', 'TO', 'TR', 'TT', 'TV', 'TW', 'TZ', 'UA', 'UG', 'UM', 'US', 'UY', 'UZ', 'VA', 'VC', 'VE', 'VG', 'VI',
  'VN', 'VU', 'WF', 'WS', 'YE', 'YT', 'ZA', 'ZM', 'ZW',
] as const;

/**
 * Kosovo: "XK" is a user-assigned code, not in ISO 3166-1, but it is the code the European Commission, the
 * IMF, SWIFT and IBAN (XK05...) use, and people live and bank there. Refusing it would make a real
 * jurisdiction impossible to onboard, so it is accepted (and can be named in a policy's highRiskCountries).
 */
const USER_ASSIGNED_IN_USE = ['XK'] as const;

export const COUNTRY_CODES: readonly string[] = Object.freeze(
  [...ISO_3166_1_ALPHA_2, ...USER_ASSIGNED_IN_USE].sort(),
);

export const CURRENCY_CODES: readonly string[] = Object.freeze(platformCurrencies());

const COUNTRIES = new Set(COUNTRY_CODES);
const CURRENCIES = new Set(CURRENCY_CODES);

export function isCountryCode(code: string): boolean {
  return COUNTRIES.has(code);
}

export function isCurrencyCode(code: string): boolean {
  return CURRENCIES.has(code);
}

/**
 * The platform's currencies, checked once: a Node.js built without full ICU data would otherwise refuse
 * every payment with a puzzling 400, so it stops at start-up instead.
 */
function platformCurrencies(): string[] {
  const codes = [...Intl.supportedValuesOf('currency')].filter((c) => /^[A-Z]{3}$/.test(c)).sort();
  const expected = ['USD', 'EUR', 'GBP', 'JPY', 'CHF'];
  if (codes.length < 100 || !expected.every((c) => codes.includes(c))) {
    throw new Error(
      `this Node.js has incomplete ICU currency data (${codes.length} codes): run a build with full ICU`,
    );
  }
  return codes;
}

/**
 * ISO 4217 minor units: how many decimal places a currency's minor unit has, so how many of a client's
 * `amountCents` (always minor units) make one major unit. Most currencies have 2; these do not (the "Minor unit"
 * column of the ISO 4217 list, as the maintenance agency SIX publishes it). Not the platform's Intl digits: CLDR
 * gives display digits (0 for IQD, HUF, IDR, ...), which are not ISO's.
 */
// biome-ignore format: grouped by exponent, easy to compare with the source
const ISO_4217_EXPONENTS_NOT_TWO: Readonly<Record<string, 0 | 3 | 4>> = Object.freeze({
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0,
  VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
});

/** Codes whose ISO 4217 minor unit is "N.A." (units of account, metals, testing): nothing to convert. */
const ISO_4217_NO_MINOR_UNIT = new Set([
  'XAG',
  'XAU',
  'XBA',
  'XBB',
  'XBC',
  'XBD',
  'XDR',
  'XPD',
  'XPT',
  'XSU',
  'XTS',
  'XUA',
  'XXX',
]);

/** The ISO 4217 exponent of a supported currency, or null when it has none (XDR, XSU) or is not supported. */
export function currencyExponent(code: string): number | null {
  if (!isCurrencyCode(code) || ISO_4217_NO_MINOR_UNIT.has(code)) return null;
  return Object.hasOwn(ISO_4217_EXPONENTS_NOT_TWO, code) ? ISO_4217_EXPONENTS_NOT_TWO[code]! : 2;
}
