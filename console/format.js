/** How the console writes money, times and durations: one place, so every page says them the same way. */

/** Minor units as the currency's amount: ISO 4217 exponents through Intl (USD 2, JPY 0, BHD 3). */
export function money(amountMinor, currency) {
  if (typeof amountMinor !== 'number') return '—';
  try {
    const format = new Intl.NumberFormat('en-US', { style: 'currency', currency });
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
    return format.format(amountMinor / 10 ** digits);
  } catch {
    return `${amountMinor} ${currency} (minor units)`;
  }
}

export function dateTime(iso) {
  if (typeof iso !== 'string') return '—';
  return (
    new Date(iso).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'UTC' }) +
    ' UTC'
  );
}

/** "3 h 12 min", "45 s": how long ago, or how long until. */
export function duration(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export const shortId = (id) =>
  typeof id === 'string' && id.length > 16 ? `${id.slice(0, 12)}…${id.slice(-4)}` : id;

/** A feature or condition value as text: strings quoted, lists bracketed. */
export function value(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return `[${v.map(value).join(', ')}]`;
  if (typeof v === 'string') return `"${v}"`;
  return String(v);
}
