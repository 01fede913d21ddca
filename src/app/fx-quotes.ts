import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../config.ts';
import { assert } from '../domain/assert.ts';
import type { AuditValue } from '../domain/audit.ts';
import { AppError, type ErrorDetail } from '../domain/errors.ts';
import {
  convert,
  type FxQuote,
  type FxTerms,
  pairKey,
  parseRateTable,
  type RateTable,
} from '../domain/fx.ts';
import { newId } from '../domain/ids.ts';
import { type Posting, transfer } from '../domain/ledger.ts';
import type { Account, Actor, Payment } from '../domain/types.ts';
import type { LockHints, Tx } from '../storage/store.ts';
import { ensureSystemAccountById } from './accounts.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import type { Services } from './services.ts';

/**
 * Foreign exchange with an enforced rate (docs/decisions/0021-fx-quotes.md):
 *
 *   POST /v1/fx-quotes  prices `sourceAmountCents` of one currency in another at the configured rate, rounded
 *                       down (src/domain/fx.ts), and stores the quote for its API key until it expires.
 *   POST /v1/payments   between accounts of two currencies must carry a live `quoteId` of the same key, amount
 *                       and currencies. The payment's transaction takes the quote (under a lock: one payment per
 *                       quote) and, when posted, writes two balanced postings at exactly the quoted amounts:
 *                       payer → FX pool in the source currency, FX pool → payee in the destination currency.
 *
 * The FX pools are system accounts, one per currency (`acc_system_fx_<currency>`): their balances are the house's
 * open position in each currency, which treasury settles outside this API.
 */

/** The rates and the quote lifetime, loaded once at start-up. */
export interface FxDesk {
  rates: RateTable;
  quoteTtlMs: number;
}

export const DEMO_FX_RATES = fileURLToPath(new URL('../../config/fx-rates.json', import.meta.url));

/**
 * Reads the rates file (FX_RATES_PATH, or the demo rates): `{"rates": {"USD/JPY": "151.37", ...}}`, other
 * top-level fields ignored. A bad file stops start-up with one line naming the variable. In production the file
 * would be written by the treasury's rate feed (a liquidity provider's prices with the house's spread) and the
 * process restarted or the loader replaced by that feed's client: rates are read here only.
 */
export function loadFxDesk(path: string | null, quoteTtlMs: number): FxDesk {
  const file = path ?? DEMO_FX_RATES;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ConfigError('FX_RATES_PATH', `${file}: ${(error as Error).message}`);
  }
  const rates =
    typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)['rates'] : undefined;
  const table = parseRateTable(rates);
  if (!table.ok) throw new ConfigError('FX_RATES_PATH', `${file}: ${table.problem}`);
  return { rates: table.table, quoteTtlMs };
}

export const fxPoolAccountId = (currency: string) => `acc_system_fx_${currency.toLowerCase()}`;
const fxPoolLockName = (currency: string) => `system-account:fx:${currency}`;
/** The name lock that makes a quote single-use across processes: every payment taking it declares it. */
const fxQuoteLockName = (quoteId: string) => `fx-quote:${quoteId}`;

export interface FxQuoteRequest {
  sourceCurrency: string;
  destinationCurrency: string;
  sourceAmountCents: number;
}

/** POST /v1/fx-quotes. Under an Idempotency-Key (optional) a retry replays the first quote. */
export async function createFxQuote(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  request: FxQuoteRequest,
): Promise<IdempotentReply> {
  const { sourceCurrency, destinationCurrency, sourceAmountCents } = request;
  if (sourceCurrency === destinationCurrency) {
    throw new AppError('VALIDATION_ERROR', 'a quote converts between two different currencies', [
      { field: '/destinationCurrency', message: 'must differ from sourceCurrency' },
    ]);
  }
  // Priced before the transaction: the rate table is fixed for the process, so the answer cannot change.
  const rate = services.fx.rates.get(pairKey(sourceCurrency, destinationCurrency));
  if (rate === undefined) {
    throw new AppError(
      'FX_PAIR_NOT_OFFERED',
      `no rate is offered from ${sourceCurrency} to ${destinationCurrency}`,
    );
  }
  const conversion = convert(sourceAmountCents, rate, sourceCurrency, destinationCurrency);
  if (!conversion.ok) {
    throw new AppError(
      'FX_AMOUNT_OUT_OF_RANGE',
      conversion.problem === 'zero'
        ? `the amount buys less than one minor unit of ${destinationCurrency}`
        : 'the converted amount exceeds the largest supported amount',
      [{ field: '/sourceAmountCents', message: conversion.problem }],
    );
  }
  const idempotent = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/fx-quotes', request);
  const currencies = [sourceCurrency, destinationCurrency];
  return runIdempotent(services, idempotent, () => ({
    // The pools a payment with this quote will post through exist from here on, so a payment never creates
    // accounts (it only locks them). Declared like a funding account's creation (src/app/accounts.ts).
    locks: { accountIds: currencies.map(fxPoolAccountId), names: currencies.map(fxPoolLockName) },
    execute: async (tx) => {
      for (const currency of currencies) {
        await ensureSystemAccountById(
          tx,
          services.cipher,
          fxPoolAccountId(currency),
          currency,
          `system-fx-${currency}`,
        );
      }
      const quote: FxQuote = {
        id: newId('fxq'),
        apiKeyId: actor.apiKeyId,
        sourceCurrency,
        destinationCurrency,
        sourceAmountCents,
        rate: rate.text,
        destinationAmountCents: conversion.destinationAmountCents,
        requestId: actor.requestId,
        createdAtMs: tx.nowMs,
        expiresAtMs: tx.nowMs + services.fx.quoteTtlMs,
        paymentId: null,
        usedAtMs: null,
      };
      await tx.insertFxQuote(quote);
      await tx.appendAudit({
        eventType: 'fx_quote.created',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'fx_quote',
        resourceId: quote.id,
        metadata: quoteAuditMetadata(quote),
      });
      return jsonOutcome(201, { quote: fxQuoteView(quote) }, quote.id);
    },
  }));
}

function quoteAuditMetadata(q: FxQuote): Record<string, AuditValue> {
  return {
    quoteId: q.id,
    sourceCurrency: q.sourceCurrency,
    destinationCurrency: q.destinationCurrency,
    sourceAmountCents: q.sourceAmountCents,
    rate: q.rate,
    destinationAmountCents: q.destinationAmountCents,
    expiresAtMs: q.expiresAtMs,
  };
}

export function fxQuoteView(q: FxQuote) {
  return {
    id: q.id,
    sourceCurrency: q.sourceCurrency,
    destinationCurrency: q.destinationCurrency,
    sourceAmountCents: q.sourceAmountCents,
    rate: q.rate,
    destinationAmountCents: q.destinationAmountCents,
    createdAt: new Date(q.createdAtMs).toISOString(),
    expiresAt: new Date(q.expiresAtMs).toISOString(),
  };
}

/**
 * What a payment with `quoteId` locks besides its own accounts: both FX pools and the quote's name (PostgreSQL
 * takes them at the start of the batch, in the global order, so no deadlock). Read from committed state: a
 * quote's currencies never change. An unknown quote locks nothing extra; the transaction then refuses it.
 */
export async function fxPaymentLocks(services: Services, quoteId: string | undefined): Promise<LockHints> {
  if (quoteId === undefined) return {};
  const quote = await services.store.reads.getFxQuote(quoteId);
  const pools =
    quote === undefined ? [] : [quote.sourceCurrency, quote.destinationCurrency].map(fxPoolAccountId);
  return { accountIds: pools, names: [fxQuoteLockName(quoteId)] };
}

/** The FX pools a recorded cross-currency payment posts through (none for one currency): an approval's locks. */
export function fxPoolsOf(payment: Pick<Payment, 'currency' | 'fx'>): string[] {
  if (payment.fx == null) return [];
  return [payment.currency, payment.fx.destinationCurrency].map(fxPoolAccountId);
}

export interface QuotedPayment {
  quoteId: string;
  amountCents: number;
  currency: string;
}

/**
 * Inside the payment's transaction, under the quote's name lock: the quote exists, is this key's, unused, not
 * expired, and matches the payment (amount, currency, both accounts' currencies). Anything else is a 422 (404
 * when there is no such quote), thrown: nothing moves and nothing is stored under the Idempotency-Key.
 */
export async function takeFxQuote(
  tx: Tx,
  actor: Actor,
  payment: QuotedPayment,
  source: Account,
  destination: Account,
): Promise<FxTerms> {
  const quote = await tx.lockFxQuote(payment.quoteId);
  if (quote === undefined) throw new AppError('FX_QUOTE_NOT_FOUND', 'FX quote not found');
  if (quote.paymentId !== null) {
    throw new AppError('FX_QUOTE_USED', `the FX quote was already used by payment ${quote.paymentId}`);
  }
  if (tx.nowMs >= quote.expiresAtMs) {
    throw new AppError('FX_QUOTE_EXPIRED', 'the FX quote has expired: ask for a new one');
  }
  const mismatches: ErrorDetail[] = [];
  const expect = (ok: boolean, field: string, message: string) => {
    if (!ok) mismatches.push({ field, message });
  };
  expect(quote.apiKeyId === actor.apiKeyId, '/quoteId', 'the quote was made for another API key');
  expect(
    quote.sourceAmountCents === payment.amountCents,
    '/amountCents',
    `must be the quoted ${quote.sourceAmountCents}`,
  );
  expect(
    quote.sourceCurrency === payment.currency,
    '/currency',
    `must be the quote's ${quote.sourceCurrency}`,
  );
  expect(
    source.currency === quote.sourceCurrency,
    '/sourceAccountId',
    `the source account must hold the quote's ${quote.sourceCurrency}`,
  );
  expect(
    destination.currency === quote.destinationCurrency,
    '/destinationAccountId',
    `the destination account must hold the quote's ${quote.destinationCurrency}`,
  );
  if (mismatches.length > 0) {
    throw new AppError('FX_QUOTE_MISMATCH', 'the payment does not match its FX quote', mismatches);
  }
  return {
    quoteId: quote.id,
    rate: quote.rate,
    destinationAmountCents: quote.destinationAmountCents,
    destinationCurrency: quote.destinationCurrency,
  };
}

/** Marks the quote used by the payment that recorded it, in the payment's transaction (any outcome). */
export async function useFxQuote(tx: Tx, payment: Payment): Promise<void> {
  assert(payment.fx != null, 'only a cross-currency payment uses a quote');
  // Under the quote's lock this cannot fail; the guarded UPDATE keeps it single-use even if it could.
  if (!(await tx.useFxQuote(payment.fx.quoteId, payment.id))) {
    throw new AppError('FX_QUOTE_USED', 'the FX quote was already used by another payment');
  }
}

/**
 * The postings of a posted payment: one transfer in its currency, or for a cross-currency payment two, each
 * balanced in its own currency, at exactly the recorded amounts (the quote's, whenever the payment is posted).
 */
export function paymentPostings(payment: Payment): Posting[] {
  const { id, currency, sourceAccountId, destinationAccountId, amountCents, fx } = payment;
  if (fx == null) {
    return [transfer('payment', currency, id, sourceAccountId, destinationAccountId, amountCents)];
  }
  const { destinationCurrency, destinationAmountCents } = fx;
  return [
    transfer('payment', currency, id, sourceAccountId, fxPoolAccountId(currency), amountCents),
    transfer(
      'payment',
      destinationCurrency,
      id,
      fxPoolAccountId(destinationCurrency),
      destinationAccountId,
      destinationAmountCents,
    ),
  ];
}

/**
 * Posts a payment (src/app/create-payment.ts, and an approval in src/app/review.ts) through the store's
 * postLedger, in the caller's transaction: all legs commit together or none. `accounts` holds the payment's
 * accounts; the FX pools are added from the locks the caller declared. Returns the ledger transaction ids, the
 * source currency's first.
 */
export async function postPayment(
  tx: Tx,
  payment: Payment,
  accounts: Map<string, Account>,
  requestId: string,
): Promise<string[]> {
  const pools = fxPoolsOf(payment);
  if (pools.length > 0) {
    const locked = await tx.lockAccounts(pools);
    assert(locked.size === pools.length, 'the FX pools of a quote exist (created with the quote)');
    for (const [id, account] of locked) accounts.set(id, account);
  }
  const ids: string[] = [];
  for (const posting of paymentPostings(payment)) ids.push(await tx.postLedger(posting, accounts, requestId));
  return ids;
}

/** The audit metadata of a payment's FX terms (none for one currency). */
export function fxAuditMetadata(
  payment: Payment,
  ledgerTransactionIds: string[],
): Record<string, AuditValue> {
  if (payment.fx == null) return {};
  return { fx: { ...payment.fx, ledgerTransactionIds } };
}
