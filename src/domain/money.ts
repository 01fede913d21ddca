/**
 * Money is an integer count of minor units (cents for USD), always a JS safe integer. We never use floats
 * and never parse a string twice: the HTTP schema rejects anything that is not a JSON integer in range.
 */
export const CURRENCY_PATTERN = '^[A-Z]{3}$';
export const COUNTRY_PATTERN = '^[A-Z]{2}$';
