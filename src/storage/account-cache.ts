import { assert } from '../domain/assert.ts';
import type { Account } from '../domain/types.ts';
import type { SqlExecutor } from './sql-store.ts';
import { chunks, type FlushScope, type PendingSource } from './write-behind.ts';

/**
 * The batch's accounts: loaded once (on PostgreSQL, locked), then read and changed in memory. Three layers:
 * what the database holds (`stored`), the balances after the batch's committed commands, and the running
 * command's changes, which a failure drops. The write-behind writes changed balances with one UPDATE per
 * flush, guarded by the balances it last stored: a lost update would change fewer rows and stop the process.
 */
export class AccountCache implements PendingSource {
  readonly table = 'accounts';
  private stored = new Map<string, Account>();
  private committed = new Map<string, Account>();
  private command = new Map<string, Account>();
  /** `stored` as it was before a flush of the running command's changes, to restore if the command fails. */
  private storedBeforeCommand = new Map<string, Account>();

  get(id: string): Account | undefined {
    return this.command.get(id) ?? this.committed.get(id) ?? this.stored.get(id);
  }

  /** An account row as just read from the database (which, after a flush, agrees with this cache). */
  loaded(account: Account): void {
    assert(this.get(account.id) === undefined, `account ${account.id} is loaded once per batch`);
    this.stored.set(account.id, account);
  }

  /** The running command changed a balance. `before` is what it read: the stored row if not loaded here. */
  update(before: Account, after: Account): void {
    assert(before.id === after.id, 'an update keeps the account id');
    if (this.get(before.id) === undefined) this.stored.set(before.id, before);
    assert(
      sameBalances(this.get(before.id)!, before),
      `account ${before.id} changed since the command read it`,
    );
    this.command.set(after.id, after);
  }

  hasPending(scope: FlushScope): boolean {
    for (const account of this.layer(scope).values()) {
      if (!sameBalances(account, this.stored.get(account.id)!)) return true;
    }
    return false;
  }

  async flush(db: SqlExecutor, scope: FlushScope): Promise<void> {
    const changed = [...this.layer(scope).values()].filter((a) => !sameBalances(a, this.stored.get(a.id)!));
    for (const chunk of chunks(changed, UPDATES_PER_STATEMENT)) {
      const params = chunk.flatMap((a) => {
        const was = this.stored.get(a.id)!;
        return [
          a.id,
          a.postedBalanceCents,
          a.heldBalanceCents,
          a.stampedAtMs,
          was.postedBalanceCents,
          was.heldBalanceCents,
        ];
      });
      const updated = await db.run(
        `WITH v (id, posted, held, stamped, was_posted, was_held) AS (VALUES ${chunk.map(() => VALUES_ROW).join(', ')})
         UPDATE accounts SET posted_balance_cents = v.posted, held_balance_cents = v.held, stamped_at_ms = v.stamped
           FROM v
          WHERE accounts.id = v.id AND accounts.posted_balance_cents = v.was_posted
            AND accounts.held_balance_cents = v.was_held`,
        params,
      );
      assert(updated === chunk.length, 'no account balance changed under the batch');
    }
    for (const account of changed) {
      if (scope === 'command' && !this.storedBeforeCommand.has(account.id))
        this.storedBeforeCommand.set(account.id, this.stored.get(account.id)!);
      this.stored.set(account.id, account);
    }
    if (scope === 'batch') this.committed.clear();
  }

  /** The running command ended: keep its changes, or drop them (and what a flush of them stored). */
  endCommand(committed: boolean): void {
    if (committed) for (const [id, account] of this.command) this.committed.set(id, account);
    else for (const [id, account] of this.storedBeforeCommand) this.stored.set(id, account);
    this.command.clear();
    this.storedBeforeCommand.clear();
  }

  /** Forgets everything (after a direct write to accounts, once every queued change was written). */
  clear(): void {
    this.stored.clear();
    this.committed.clear();
    this.command.clear();
    this.storedBeforeCommand.clear();
  }

  private layer(scope: FlushScope): Map<string, Account> {
    return scope === 'batch' ? this.committed : this.command;
  }
}

const UPDATES_PER_STATEMENT = 200;
/** Typed, so PostgreSQL needs no inference for the VALUES list (and SQLite reads the same SQL). */
const VALUES_ROW =
  '(CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT))';

/** What a batch changes on an account row: its balances, and the latest instant stamped on its history. */
function sameBalances(a: Account, b: Account): boolean {
  return (
    a.postedBalanceCents === b.postedBalanceCents &&
    a.heldBalanceCents === b.heldBalanceCents &&
    a.stampedAtMs === b.stampedAtMs
  );
}
