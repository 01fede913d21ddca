import { randomInt } from 'node:crypto';
import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import { transfer } from '../domain/ledger.ts';
import { type Account, type Actor, OPEN_ACCOUNT_CONTROLS } from '../domain/types.ts';
import type { PiiCipher } from '../security/pii-cipher.ts';
import type { AccountRow, Tx } from '../storage/store.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import { requireCustomerInScope } from './scope.ts';
import type { Services } from './services.ts';
import { accountView } from './views.ts';

export interface NewAccount {
  customerId: string;
  currency: string;
  initialBalanceCents: number;
  /** Fixed id and number for the seeded demo accounts; generated otherwise. */
  id?: string;
  accountNumber?: string;
}

/**
 * POST /v1/accounts. Opens an account; it always opens empty: an opening balance is a real ledger posting
 * from the currency's system funding account, so the ledger balances from the first cent. Under an
 * Idempotency-Key (optional) a retry replays the first answer: one account, funded once.
 */
export async function createAccount(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  input: NewAccount,
): Promise<IdempotentReply> {
  requireCustomerInScope(actor, input.customerId); // scoped key: in scope, or 404 (src/app/scope.ts)
  // The fingerprint covers the request as the endpoint reads it: an omitted initialBalanceCents is 0.
  const fingerprinted = {
    customerId: input.customerId,
    currency: input.currency,
    initialBalanceCents: input.initialBalanceCents,
  };
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/accounts', fingerprinted);
  // PostgreSQL's lock order: the currency's funding account is locked with the batch's accounts, before any
  // audit append in the batch takes the audit head, and the name serialises the batches that may create it.
  const funded = input.initialBalanceCents > 0;
  return runIdempotent(services, request, () => ({
    locks: {
      accountIds: funded ? [systemAccountId(input.currency)] : [],
      names: funded ? [systemAccountLockName(input.currency)] : [],
    },
    execute: async (tx) => {
      const account = await openAccount(tx, services.cipher, actor, input);
      return jsonOutcome(201, { account: accountView(account) }, account.id);
    },
  }));
}

export const systemAccountId = (currency: string) => `acc_system_funding_${currency.toLowerCase()}`;
export const systemAccountLockName = (currency: string) => `system-account:${currency}`;

export async function openAccount(
  tx: Tx,
  cipher: PiiCipher,
  actor: Actor,
  input: NewAccount,
): Promise<Account> {
  const owners = await tx.getCustomers([input.customerId]);
  if (!owners.has(input.customerId)) throw new AppError('CUSTOMER_NOT_FOUND', 'customer not found');
  const number =
    input.accountNumber ??
    `44${String(randomInt(0, 1e7)).padStart(7, '0')}${String(randomInt(0, 1e7)).padStart(7, '0')}`;
  const row: AccountRow = {
    id: input.id ?? newId('acc'),
    kind: 'customer',
    ownerCustomerId: input.customerId,
    currency: input.currency,
    postedBalanceCents: 0,
    heldBalanceCents: 0,
    ...OPEN_ACCOUNT_CONTROLS,
    accountNumberLast4: number.slice(-4),
    numberEnc: cipher.encrypt(number, 'account.number'),
    numberIndex: cipher.blindIndex(number, 'account.number'),
    createdAtMs: tx.nowMs,
    stampedAtMs: 0,
  };
  await tx.insertAccount(row);
  let ledgerTransactionId: string | null = null;
  if (input.initialBalanceCents > 0) {
    const system = await ensureSystemAccount(tx, cipher, input.currency);
    const accounts = await tx.lockAccounts([system.id, row.id]);
    const posting = transfer(
      'opening_balance',
      input.currency,
      null,
      system.id,
      row.id,
      input.initialBalanceCents,
    );
    ledgerTransactionId = await tx.postLedger(posting, accounts, actor.requestId);
  }
  await tx.appendAudit({
    eventType: 'account.created',
    actorId: actor.apiKeyId,
    requestId: actor.requestId,
    resourceType: 'account',
    resourceId: row.id,
    metadata: {
      accountId: row.id,
      customerId: input.customerId,
      currency: input.currency,
      openingBalanceCents: input.initialBalanceCents,
      ledgerTransactionId,
    },
  });
  const opened = await tx.lockAccounts([row.id]);
  return opened.get(row.id)!;
}

/** The per-currency funding account that opening balances are posted from (created on first use). */
function ensureSystemAccount(tx: Tx, cipher: PiiCipher, currency: string): Promise<Account> {
  return ensureSystemAccountById(
    tx,
    cipher,
    systemAccountId(currency),
    currency,
    `system-funding-${currency}`,
  );
}

/**
 * A system account by its fixed id, created on first use. Each system account's id is fixed by its purpose and
 * currency (the funding account here, the FX pools in src/app/fx-quotes.ts), so two processes creating the same
 * one at once conflict on the id: the loser inserts nothing (ON CONFLICT DO NOTHING) and reads the winner's row.
 * The caller declares the id in its lock hints and a name that serialises the creators (as createAccount does).
 */
export async function ensureSystemAccountById(
  tx: Tx,
  cipher: PiiCipher,
  id: string,
  currency: string,
  label: string,
): Promise<Account> {
  const existing = (await tx.lockAccounts([id])).get(id);
  if (existing !== undefined) return existing;
  await tx.insertAccount({
    id,
    kind: 'system',
    ownerCustomerId: null,
    currency,
    postedBalanceCents: 0,
    heldBalanceCents: 0,
    ...OPEN_ACCOUNT_CONTROLS,
    accountNumberLast4: '0000',
    numberEnc: cipher.encrypt(label, 'account.number'),
    numberIndex: cipher.blindIndex(label, 'account.number'),
    createdAtMs: tx.nowMs,
    stampedAtMs: 0,
  });
  const created = (await tx.lockAccounts([id])).get(id);
  assert(created !== undefined && created.kind === 'system', `system account ${id} exists once created`);
  return created;
}
