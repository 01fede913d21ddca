import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import {
  type Account,
  type AccountControls,
  type AccountStatus,
  type Actor,
  availableCents,
  balanceFloorCents,
} from '../domain/types.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import { requireAccountInScope } from './scope.ts';
import type { Services } from './services.ts';
import { accountView } from './views.ts';

/**
 * POST /v1/accounts/:id/controls: a compliance officer changes an account's status and limits at run time
 * (docs/decisions/0024-account-controls.md). The change is one command under the account's lock, the same
 * lock every payment, approval and refund takes before it reads the balance, so a payment decided after the
 * change sees it and one decided before it cannot breach it: the check and the debit are in one transaction.
 *
 * - `status`: `active` sends and receives; `frozen` receives only; `closed` neither, for good. Closing needs
 *   a zero posted and held balance (409 ACCOUNT_NOT_EMPTY); a closed account takes no further change.
 * - `overdraftLimitCents`: the available balance may go down to its negative.
 * - `minimumBalanceCents`: the available balance must stay at or above it.
 *   At most one of the two is non-zero: a floor below zero and above zero at once has no meaning.
 * A limit is never set above what the account has (409 ACCOUNT_BELOW_NEW_LIMIT): the available balance is at
 * or above its floor at all times, which the ledger asserts and the database checks (migration 20). To lower an
 * overdraft that is in use, or raise a minimum above the balance, bring money in first.
 */
export interface ControlsChange {
  status?: AccountStatus | undefined;
  overdraftLimitCents?: number | undefined;
  minimumBalanceCents?: number | undefined;
}

export async function changeAccountControls(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  accountId: string,
  change: ControlsChange,
): Promise<IdempotentReply> {
  const path = `/v1/accounts/${accountId}/controls`;
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', path, change);
  return runIdempotent(services, request, () => ({
    locks: { accountIds: [accountId] },
    execute: async (tx) => {
      const before = (await tx.lockAccounts([accountId])).get(accountId);
      // System accounts (funding, FX pools) are internal: to a client they do not exist.
      if (before === undefined || before.kind !== 'customer') {
        throw new AppError('ACCOUNT_NOT_FOUND', 'account not found');
      }
      requireAccountInScope(actor, before);
      const after = nextControls(before, change);
      await tx.setAccountControls(before, after);
      const changed = { ...before, ...after };
      await tx.appendAudit({
        eventType: 'account.controls_updated',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'account',
        resourceId: accountId,
        metadata: { accountId, before: { ...controlsOf(before) }, after: { ...after } },
      });
      await tx.appendEvent({
        type: 'account.controls_updated',
        resourceType: 'account',
        resourceId: accountId,
        ...(before.ownerCustomerId === null ? {} : { customerId: before.ownerCustomerId }),
        data: JSON.stringify({ account: { id: accountId, ...after, previous: controlsOf(before) } }),
      });
      return jsonOutcome(200, { account: accountView(changed) }, accountId);
    },
  }));
}

function controlsOf(account: AccountControls): AccountControls {
  return {
    status: account.status,
    overdraftLimitCents: account.overdraftLimitCents,
    minimumBalanceCents: account.minimumBalanceCents,
  };
}

/** The controls after the change, or the 409/400 that refuses it (nothing is written then). */
function nextControls(account: Account, change: ControlsChange): AccountControls {
  if (account.status === 'closed') {
    throw new AppError('ACCOUNT_CLOSED', 'the account is closed: its controls no longer change');
  }
  const after: AccountControls = {
    status: change.status ?? account.status,
    overdraftLimitCents: change.overdraftLimitCents ?? account.overdraftLimitCents,
    minimumBalanceCents: change.minimumBalanceCents ?? account.minimumBalanceCents,
  };
  if (after.overdraftLimitCents > 0 && after.minimumBalanceCents > 0) {
    throw new AppError(
      'VALIDATION_ERROR',
      'an account has an overdraft limit or a minimum balance, not both: set the other to 0',
      [
        {
          field: change.minimumBalanceCents === undefined ? '/overdraftLimitCents' : '/minimumBalanceCents',
          message: 'conflicts with the other limit',
        },
      ],
    );
  }
  if (availableCents(account) < balanceFloorCents(after)) {
    throw new AppError(
      'ACCOUNT_BELOW_NEW_LIMIT',
      `the available balance (${availableCents(account)}) is below the floor these limits set ` +
        `(${balanceFloorCents(after)}): bring money in first`,
    );
  }
  if (after.status === 'closed' && (account.postedBalanceCents !== 0 || account.heldBalanceCents !== 0)) {
    throw new AppError(
      'ACCOUNT_NOT_EMPTY',
      'only an account with a zero posted and held balance can be closed: move its money out first',
    );
  }
  assert(
    Number.isSafeInteger(after.overdraftLimitCents) && after.overdraftLimitCents >= 0,
    'overdraft limit',
  );
  assert(
    Number.isSafeInteger(after.minimumBalanceCents) && after.minimumBalanceCents >= 0,
    'minimum balance',
  );
  return after;
}
