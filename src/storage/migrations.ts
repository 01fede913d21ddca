/**
 * Versioned schema migrations, one list for both dialects. Each migration is SQL with a few tokens that the
 * dialect fills in (auto-increment keys, 64-bit integers). Migrations only ever get appended: a released
 * migration is never edited. The runner records each applied version in `schema_migrations` and runs them in
 * one transaction at start-up (see sqlite.ts / postgres.ts for how each dialect serialises that).
 */
export type Dialect = 'sqlite' | 'postgres';

export interface Migration {
  version: number;
  name: string;
  /** The same SQL for both dialects (with tokens), or each dialect's own (empty: nothing to do there). */
  sql: string | Record<Dialect, string>;
}

const TOKENS: Record<Dialect, Record<string, string>> = {
  sqlite: { SEQ: 'INTEGER PRIMARY KEY AUTOINCREMENT', BIGINT: 'INTEGER' },
  postgres: { SEQ: 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY', BIGINT: 'BIGINT' },
};

export function migrationSql(migration: Migration, dialect: Dialect): string {
  const sql = typeof migration.sql === 'string' ? migration.sql : migration.sql[dialect];
  return sql.replace(/\{\{(\w+)\}\}/g, (_, token: string) => {
    const value = Object.hasOwn(TOKENS[dialect], token) ? TOKENS[dialect][token] : undefined;
    if (value === undefined) throw new Error(`unknown migration token ${token}`);
    return value;
  });
}

/** Migration 17 on either engine: the same SQL but for the integer type and PostgreSQL's NOT NULL once filled. */
function balancesInTimeSql(dialect: Dialect): string {
  const bigint = dialect === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const notNull = (table: string, column: string) =>
    dialect === 'postgres' ? `ALTER TABLE ${table} ALTER COLUMN ${column} SET NOT NULL;` : '';
  return `
ALTER TABLE ledger_entries ADD COLUMN balance_after_cents ${bigint};
UPDATE ledger_entries SET balance_after_cents = r.running
  FROM (SELECT seq, SUM(CASE WHEN direction = 'credit' THEN amount_cents ELSE -amount_cents END)
                    OVER (PARTITION BY account_id ORDER BY seq) AS running FROM ledger_entries) AS r
 WHERE r.seq = ledger_entries.seq;
${notNull('ledger_entries', 'balance_after_cents')}
ALTER TABLE holds ADD COLUMN placed_total_after_cents ${bigint};
ALTER TABLE holds ADD COLUMN resolved_total_after_cents ${bigint};
UPDATE holds SET placed_total_after_cents = r.total
  FROM (SELECT seq, SUM(amount_cents) OVER (PARTITION BY account_id ORDER BY created_at_ms, seq) AS total
          FROM holds) AS r
 WHERE r.seq = holds.seq;
UPDATE holds SET resolved_total_after_cents = r.total
  FROM (SELECT seq, SUM(amount_cents) OVER (PARTITION BY account_id ORDER BY resolved_at_ms, seq) AS total
          FROM holds WHERE resolved_at_ms IS NOT NULL) AS r
 WHERE r.seq = holds.seq;
${notNull('holds', 'placed_total_after_cents')}
CREATE INDEX holds_account_placed ON holds (account_id, created_at_ms, placed_total_after_cents);
CREATE INDEX holds_account_resolved ON holds (account_id, resolved_at_ms, resolved_total_after_cents)
  WHERE resolved_at_ms IS NOT NULL;
`;
}

/** Migration 20: an account's controls, as columns (status, overdraft limit, minimum balance). */
function accountControlColumns(bigint: string): string {
  return [
    `status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed'))`,
    `overdraft_limit_cents ${bigint} NOT NULL DEFAULT 0 CHECK (overdraft_limit_cents >= 0)`,
    `minimum_balance_cents ${bigint} NOT NULL DEFAULT 0 CHECK (minimum_balance_cents >= 0)`,
    `stamped_at_ms ${bigint} NOT NULL DEFAULT 0`,
  ].join(',\n  ');
}

/**
 * Migration 20's backfill of accounts.stamped_at_ms: the latest instant on the account's entries and holds
 * (`greatest`: SQLite's max() of several arguments, PostgreSQL's GREATEST).
 */
function latestStampSql(greatest: string, account: string): string {
  return `${greatest}(
    COALESCE((SELECT MAX(e.created_at_ms) FROM ledger_entries e WHERE e.account_id = ${account}.id), 0),
    COALESCE((SELECT MAX(h.created_at_ms) FROM holds h WHERE h.account_id = ${account}.id), 0),
    COALESCE((SELECT MAX(h.resolved_at_ms) FROM holds h WHERE h.account_id = ${account}.id), 0))`;
}

/** A customer account's available balance never goes below its floor (src/domain/types.ts balanceFloorCents). */
const ACCOUNT_FLOOR_CHECK =
  "CHECK (kind = 'system' OR posted_balance_cents - held_balance_cents >= minimum_balance_cents - overdraft_limit_cents)";

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'foundation: api keys, customers, accounts, ledger, audit chain',
    sql: `
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'payments', 'compliance', 'auditor')),
  secret_hash TEXT NOT NULL UNIQUE,
  created_at_ms {{BIGINT}} NOT NULL,
  revoked_at_ms {{BIGINT}}
);
CREATE TABLE customers (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  name_enc TEXT NOT NULL,
  country TEXT NOT NULL,
  kyc_status TEXT NOT NULL CHECK (kyc_status IN ('verified', 'manual_review', 'rejected')),
  document_index TEXT NOT NULL UNIQUE,
  document_enc TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  updated_at_ms {{BIGINT}} NOT NULL
);
CREATE TABLE accounts (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('customer', 'system')),
  owner_customer_id TEXT REFERENCES customers (id),
  currency TEXT NOT NULL,
  number_enc TEXT NOT NULL,
  number_index TEXT NOT NULL UNIQUE,
  number_last4 TEXT NOT NULL,
  posted_balance_cents {{BIGINT}} NOT NULL DEFAULT 0,
  held_balance_cents {{BIGINT}} NOT NULL DEFAULT 0,
  created_at_ms {{BIGINT}} NOT NULL,
  CHECK (held_balance_cents >= 0),
  CHECK (kind = 'system' OR posted_balance_cents - held_balance_cents >= 0),
  CHECK ((kind = 'system') = (owner_customer_id IS NULL))
);
CREATE UNIQUE INDEX accounts_one_system_account_per_currency ON accounts (currency) WHERE kind = 'system';
CREATE INDEX accounts_owner ON accounts (owner_customer_id);
CREATE TABLE ledger_transactions (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  payment_id TEXT,
  currency TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL
);
CREATE TABLE ledger_entries (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
  payment_id TEXT,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  direction TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
  amount_cents {{BIGINT}} NOT NULL CHECK (amount_cents > 0),
  currency TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL
);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq);
CREATE INDEX ledger_entries_payment ON ledger_entries (payment_id, seq);
CREATE TABLE audit_entries (
  idx {{BIGINT}} PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  ts TEXT NOT NULL,
  event_type TEXT NOT NULL,
  actor_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  metadata TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  size {{BIGINT}} NOT NULL,
  last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, size, last_hash) VALUES (1, 0, 'GENESIS');
`,
  },
  {
    version: 2,
    name: 'payments: payments, holds, idempotency records, risk attempts',
    sql: `
CREATE TABLE payments (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL CHECK (status IN ('posted', 'manual_review', 'declined')),
  source_account_id TEXT NOT NULL REFERENCES accounts (id),
  destination_account_id TEXT NOT NULL REFERENCES accounts (id),
  amount_cents {{BIGINT}} NOT NULL CHECK (amount_cents > 0),
  currency TEXT NOT NULL,
  note TEXT,
  metadata TEXT,
  reasons TEXT NOT NULL,
  decision TEXT NOT NULL,
  api_key_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  updated_at_ms {{BIGINT}} NOT NULL
);
CREATE INDEX payments_status ON payments (status, seq);
CREATE INDEX payments_source ON payments (source_account_id, seq);
CREATE TABLE holds (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  payment_id TEXT NOT NULL UNIQUE REFERENCES payments (id),
  account_id TEXT NOT NULL REFERENCES accounts (id),
  amount_cents {{BIGINT}} NOT NULL CHECK (amount_cents > 0),
  status TEXT NOT NULL CHECK (status IN ('active', 'captured', 'released', 'expired')),
  created_at_ms {{BIGINT}} NOT NULL,
  resolved_at_ms {{BIGINT}}
);
CREATE INDEX holds_active ON holds (status, created_at_ms);
CREATE TABLE idempotency_records (
  api_key_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status_code INTEGER NOT NULL,
  response_body TEXT NOT NULL,
  resource_id TEXT,
  created_at_ms {{BIGINT}} NOT NULL,
  expires_at_ms {{BIGINT}} NOT NULL,
  PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX idempotency_records_expiry ON idempotency_records (expires_at_ms);
CREATE TABLE risk_attempts (
  seq {{SEQ}},
  source_account_id TEXT NOT NULL,
  destination_account_id TEXT NOT NULL,
  amount_cents {{BIGINT}} NOT NULL,
  at_ms {{BIGINT}} NOT NULL
);
CREATE INDEX risk_attempts_source ON risk_attempts (source_account_id, at_ms);
CREATE INDEX risk_attempts_pattern ON risk_attempts (source_account_id, destination_account_id, amount_cents, at_ms);
CREATE INDEX risk_attempts_age ON risk_attempts (at_ms);
`,
  },
  {
    version: 3,
    name: 'verifiable audit log: Merkle tree nodes, signed checkpoints, entries by resource',
    // Nodes are the perfect subtrees of the RFC 6962 tree (level 0 = leaf hashes), hex SHA-256, written once
    // by the append that completes them. merkle_size counts the leaves that have their nodes; it trails
    // size only between this migration and the start-up backfill (src/app/audit-log.ts).
    sql: `
CREATE TABLE audit_merkle_nodes (
  level INTEGER NOT NULL,
  idx {{BIGINT}} NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (level, idx)
);
CREATE TABLE audit_checkpoints (
  tree_size {{BIGINT}} PRIMARY KEY,
  root_hash TEXT NOT NULL,
  note TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL
);
ALTER TABLE audit_head ADD COLUMN merkle_size {{BIGINT}} NOT NULL DEFAULT 0;
CREATE INDEX audit_entries_resource ON audit_entries (resource_type, resource_id, idx);
`,
  },
  {
    version: 4,
    name: 'risk engine: KYC tiers and decisions, sanctions screening results, exact windowed risk counters',
    sql: `
ALTER TABLE customers ADD COLUMN kyc_tier TEXT NOT NULL DEFAULT 'standard';
ALTER TABLE customers ADD COLUMN sanctions_list_sha256 TEXT;
ALTER TABLE customers ADD COLUMN sanctions_score_bp INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN sanctions_entry_id TEXT;
CREATE TABLE kyc_decisions (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  customer_id TEXT NOT NULL REFERENCES customers (id),
  kyc_status_from TEXT NOT NULL,
  kyc_status_to TEXT NOT NULL,
  kyc_tier_from TEXT NOT NULL,
  kyc_tier_to TEXT NOT NULL,
  note_enc TEXT,
  actor_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL
);
CREATE INDEX kyc_decisions_customer ON kyc_decisions (customer_id, seq);
CREATE TABLE risk_counter_events (
  seq {{SEQ}},
  counter_key {{BIGINT}} NOT NULL,
  at_ms {{BIGINT}} NOT NULL,
  cum_count {{BIGINT}} NOT NULL,
  cum_sum_cents TEXT NOT NULL
);
CREATE INDEX risk_counter_events_key_time ON risk_counter_events (counter_key, at_ms, seq);
CREATE INDEX risk_counter_events_age ON risk_counter_events (at_ms);
DROP TABLE risk_attempts;
`,
  },
  {
    version: 5,
    name: 'payment lifecycle: review resolutions, refunds, event outbox, webhook endpoints and deliveries',
    // Statuses stay posted/manual_review/declined: a resolution (approved, rejected, hold_expired) is recorded
    // beside the status, and a refund keeps the payment posted with refunded_cents growing up to its amount.
    // A delivery row is one event for one endpoint; locked_until_ms/lease_token are the dispatcher's lease.
    sql: `
ALTER TABLE payments ADD COLUMN resolution TEXT;
ALTER TABLE payments ADD COLUMN resolved_at_ms {{BIGINT}};
ALTER TABLE payments ADD COLUMN resolved_by TEXT;
ALTER TABLE payments ADD COLUMN resolution_note_enc TEXT;
ALTER TABLE payments ADD COLUMN refunded_cents {{BIGINT}} NOT NULL DEFAULT 0;
CREATE TABLE refunds (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  payment_id TEXT NOT NULL REFERENCES payments (id),
  amount_cents {{BIGINT}} NOT NULL CHECK (amount_cents > 0),
  currency TEXT NOT NULL,
  reason_enc TEXT,
  ledger_transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
  api_key_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id, seq);
CREATE TABLE events (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL
);
CREATE TABLE webhook_endpoints (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  url TEXT NOT NULL,
  event_types TEXT NOT NULL,
  secret_enc TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  deleted_at_ms {{BIGINT}}
);
CREATE TABLE webhook_deliveries (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  event_id TEXT NOT NULL REFERENCES events (id),
  endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
  status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at_ms {{BIGINT}} NOT NULL,
  locked_until_ms {{BIGINT}} NOT NULL DEFAULT 0,
  lease_token TEXT,
  last_status_code INTEGER,
  last_error TEXT,
  last_attempt_at_ms {{BIGINT}},
  created_at_ms {{BIGINT}} NOT NULL,
  UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at_ms);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
`,
  },
  {
    version: 6,
    name: 'review holds by account: the held payments of a sender (KYC rejection declines them)',
    // Partial: only active holds are looked up by account; resolved ones are history and stay out of it.
    sql: `
CREATE INDEX holds_active_account ON holds (account_id, created_at_ms, seq) WHERE status = 'active';
`,
  },
  {
    version: 7,
    name: 'canonical identity: versioned document blind index, sanctions alias of a customer',
    // document_index_version says what document_index is the keyed hash of: 0, the document reference as sent
    // (every row before this migration); 1, its compact skeleton (canon-1). SQL cannot decrypt, so rows at an
    // older version are re-keyed at start-up in bounded chunks, found through this index (src/app/
    // identity-index.ts, docs/decisions/0011-canonical-identity.md). sanctions_alias_id: the sanctions
    // list alias the customer's screening matched, written by screening (null until it does).
    sql: `
ALTER TABLE customers ADD COLUMN document_index_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN sanctions_alias_id TEXT;
CREATE INDEX customers_document_index_version ON customers (document_index_version, seq);
`,
  },
  {
    version: 8,
    name: 'api key lifecycle: customer scope, expiry, rotation grace',
    // customer_ids: JSON array of the customer ids a scoped key is limited to (null: unscoped). A rotation
    // keeps the key's id and moves the old secret's hash to previous_secret_hash, accepted until
    // previous_secret_expires_at_ms (the grace period the caller chose). Both hashes are looked up by index.
    sql: `
ALTER TABLE api_keys ADD COLUMN customer_ids TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at_ms {{BIGINT}};
ALTER TABLE api_keys ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE api_keys ADD COLUMN previous_secret_expires_at_ms {{BIGINT}};
CREATE UNIQUE INDEX api_keys_previous_secret_hash ON api_keys (previous_secret_hash);
`,
  },
  {
    version: 9,
    name: 'api key lifecycle: rotation time, keyset paging',
    // rotated_at_ms: when the key's secret was last rotated (null: never). The key list pages on
    // (created_at_ms, id), which this index serves in order.
    sql: `
ALTER TABLE api_keys ADD COLUMN rotated_at_ms {{BIGINT}};
CREATE INDEX api_keys_created ON api_keys (created_at_ms, id);
`,
  },
  {
    version: 10,
    name: 'scoped keys: payments by account and status, events by the accounts and customer they are about',
    // A key scoped to customers lists only what touches their accounts (src/app/scope.ts). Its lists are a
    // union of index ranges, one per (account, side[, status]) for payments and per account or customer for
    // events, each read in seq order from where the cursor stands: never a scan of other customers' history.
    // Events name what they are about: a payment event its two accounts, a customer event its customer;
    // rows written before this migration are filled in here from their payment / resource id.
    sql: `
CREATE INDEX payments_destination ON payments (destination_account_id, seq);
CREATE INDEX payments_source_status ON payments (source_account_id, status, seq);
CREATE INDEX payments_destination_status ON payments (destination_account_id, status, seq);
ALTER TABLE events ADD COLUMN source_account_id TEXT;
ALTER TABLE events ADD COLUMN destination_account_id TEXT;
ALTER TABLE events ADD COLUMN customer_id TEXT;
UPDATE events SET
  source_account_id = (SELECT p.source_account_id FROM payments p WHERE p.id = events.resource_id),
  destination_account_id = (SELECT p.destination_account_id FROM payments p WHERE p.id = events.resource_id)
 WHERE resource_type = 'payment';
UPDATE events SET customer_id = resource_id WHERE resource_type = 'customer';
CREATE INDEX events_source_account ON events (source_account_id, seq) WHERE source_account_id IS NOT NULL;
CREATE INDEX events_destination_account ON events (destination_account_id, seq) WHERE destination_account_id IS NOT NULL;
CREATE INDEX events_customer ON events (customer_id, seq) WHERE customer_id IS NOT NULL;
`,
  },
  {
    version: 11,
    name: 'audit verification state: the verified prefix of the log and the last full verification',
    // One row shared by every process (src/app/verification.ts): entries [0, verified_size) were verified,
    // verified_hash is the hash of entry verified_size - 1 ('GENESIS' when 0). Incremental verification
    // starts there and only moves it forward; a full verification that finds a break moves it back to the
    // break. full_*: the outcome of the last full verification that finished (full_reason null: valid).
    sql: `
CREATE TABLE audit_verification (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  verified_size {{BIGINT}} NOT NULL,
  verified_hash TEXT NOT NULL,
  verified_at_ms {{BIGINT}} NOT NULL,
  full_size {{BIGINT}},
  full_at_ms {{BIGINT}},
  full_broken_index {{BIGINT}},
  full_reason TEXT,
  verified_mac TEXT,
  full_mac TEXT
);
INSERT INTO audit_verification (id, verified_size, verified_hash, verified_at_ms) VALUES (1, 0, 'GENESIS', 0);
`,
  },
  {
    version: 12,
    name: 'standard webhooks: signing secret rotation with a grace period, manual retry of failed deliveries',
    // webhook_endpoints.secret_enc now holds the endpoint's signing secrets, newest first and space-separated
    // (one secret, as before, or the new one and the previous one during a rotation's grace period): still one
    // PiiCipher envelope, so data-key rotation re-encrypts both. The previous secret signs beside the new one
    // until previous_secret_expires_at_ms (null: no previous secret). secret_rotated_at_ms: the last rotation.
    // webhook_deliveries.attempts keeps counting every attempt; attempts_at_retry is its value when the
    // delivery was last re-queued by hand (0: never), where its fresh budget of WEBHOOK_MAX_ATTEMPTS starts;
    // manual_retries counts those re-queues (docs/decisions/0015-standard-webhooks.md).
    sql: `
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at_ms {{BIGINT}};
ALTER TABLE webhook_endpoints ADD COLUMN secret_rotated_at_ms {{BIGINT}};
ALTER TABLE webhook_deliveries ADD COLUMN attempts_at_retry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN manual_retries INTEGER NOT NULL DEFAULT 0;
`,
  },
  {
    version: 13,
    name: 'no index that no query reads: KYC decisions by customer',
    // Every SQL statement in src/ was checked against the indexes (EXPLAIN QUERY PLAN on SQLite, the same
    // statements on PostgreSQL; docs/decisions/0017-sqlite-write-path.md): no statement reads kyc_decisions
    // by customer_id (they are inserted and re-encrypted by seq), and customers are never deleted, so no
    // foreign-key check needs it either. Every index a payment writes is read by some statement and stays,
    // payments_source and payments_destination included: the unfiltered scoped payment list (migration 10)
    // reads one range of each per account.
    sql: `
DROP INDEX kyc_decisions_customer;
`,
  },
  {
    version: 14,
    name: 'SQLite: risk counters in the writer memory, rebuilt from the payments; pairs ever counted kept',
    // On SQLite the windowed risk counters live in the single writer's memory and are rebuilt at start-up
    // from the payments of the last 30 days (src/storage/counter-memory.ts,
    // docs/decisions/0019-counters-in-memory.md): risk_counter_events is no longer written or read there. What
    // no window holds, whether a source ever paid a destination, is one row per pair, filled here from the
    // payments (the key text is src/domain/risk-keys.ts's pair key). PostgreSQL keeps its counters' table.
    sql: {
      sqlite: `
CREATE TABLE risk_keys_counted (counter_key TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO risk_keys_counted (counter_key)
  SELECT DISTINCT 'pair:' || source_account_id || ':' || destination_account_id FROM payments;
DROP TABLE risk_counter_events;
`,
      postgres: '',
    },
  },
  {
    version: 15,
    name: 'payments by account: the status indexes serve the unfiltered list too',
    // The unfiltered scoped payment list (migration 10) read payments_source and payments_destination, one
    // range per account and side. It now reads payments_source_status and payments_destination_status, one
    // range per account, side and status (three statuses): the same rows in the same order, from indexes
    // every payment writes anyway. Each of the two indexes dropped cost a payment a random b-tree page of WAL
    // (about 1.3 pages, 5 KiB, each; issue 15's bench). Nothing else reads them: a foreign key on
    // source_account_id or destination_account_id is only checked when an account's id is updated or an
    // account deleted, which never happens.
    sql: `
DROP INDEX IF EXISTS payments_source;
DROP INDEX IF EXISTS payments_destination;
`,
  },
  {
    version: 16,
    name: 'SQLite: payments by time, where the risk counters rebuild starts',
    // The rebuild of the in-memory counters (migration 14) replays every payment from the first one stamped
    // within the last month. Found by going back from the newest, one payment stamped by a clock that was
    // wrong (far back) would end the search early and leave the month uncounted; this index finds it
    // whatever the clock did. Appended at its right edge (times grow): no random page per payment.
    sql: {
      sqlite: `
CREATE INDEX payments_created ON payments (created_at_ms);
`,
      postgres: '',
    },
  },
  {
    version: 17,
    name: 'balances in time: running balance on each entry, running hold totals on each hold',
    // Each entry records its account's posted balance right after it, written with the entry, so a statement
    // or a balance at an instant is one index read, never a sum over history. The backfill replays each
    // account's entries in seq order (its commit order under the account's lock).
    // A hold records the running totals of holds placed on its account (with it) and resolved (with it):
    // held at T = placed by T − resolved by T, two index reads; the totals only grow, so the largest total
    // stamped at or before T is the latest. (Columns added nullable: SQLite cannot add a NOT NULL column
    // without a default; the row readers assert them, and PostgreSQL enforces them once backfilled.)
    // The hold indexes end in the running total, so "latest at or before T" is a backward range read. Entries
    // get no time index (it would cost every payment two more index entries): src/storage/ledger-sql.ts finds
    // an instant by binary search over seq along ledger_entries_account.
    sql: { sqlite: balancesInTimeSql('sqlite'), postgres: balancesInTimeSql('postgres') },
  },
  {
    version: 18,
    name: 'list filters: payment metadata by key and value',
    // GET /v1/payments?metadata[key]=value (issue 17) reads the range (key, value) of this index in payment seq
    // order, from where the cursor stands: only the payments that match. One row per metadata key, written in
    // the payment's own transaction and only for payments that carry metadata (a payment without any writes
    // nothing more than before); payment_seq is the payment's seq, found by id when the batch's rows are
    // written (src/storage/sql-store.ts, PAYMENT_METADATA). The primary key (payment_seq, key) answers "does
    // this payment have key = value" when metadata is a second filter. Metadata never changes once written.
    // The other filters (date and amount ranges, the counterparty) add no index: they narrow the rows an
    // indexed filter selects, in a bounded window per page (src/storage/scoped-sql.ts), so no payment pays
    // for another index page of WAL.
    sql: {
      sqlite: `
CREATE TABLE payment_metadata (
  payment_seq INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (payment_seq, key)
) WITHOUT ROWID;
CREATE INDEX payment_metadata_key_value ON payment_metadata (key, value, payment_seq);
INSERT INTO payment_metadata (payment_seq, key, value)
  SELECT p.seq, m.key, m.value FROM payments p, json_each(p.metadata) m WHERE p.metadata IS NOT NULL;
`,
      postgres: `
CREATE TABLE payment_metadata (
  payment_seq BIGINT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (payment_seq, key)
);
CREATE INDEX payment_metadata_key_value ON payment_metadata (key, value, payment_seq);
INSERT INTO payment_metadata (payment_seq, key, value)
  SELECT p.seq, m.key, m.value FROM payments p, jsonb_each_text(p.metadata::jsonb) m WHERE p.metadata IS NOT NULL;
`,
    },
  },
  {
    version: 19,
    name: 'foreign exchange: quotes, the quote a payment used, an FX pool account per currency',
    // fx_quotes: a quote is owned by the API key that asked for it and used by at most one payment
    // (payment_id, set in that payment's transaction under the quote's lock; UNIQUE: one quote per payment).
    // The rate is the decimal text as quoted (docs/decisions/0021-fx-quotes.md): never a float.
    // payments.fx: the quote's terms as the payment recorded them (JSON, like decision), null for one currency.
    // The FX pools are system accounts beside the funding accounts, one per currency
    // (acc_system_fx_<currency>), so "one system account per currency" no longer holds: each system account's
    // id is fixed by its purpose and currency, and the id's uniqueness is the guard. No statement reads system
    // accounts by currency any more (they are locked by id), so the old index goes rather than being reshaped.
    sql: `
CREATE TABLE fx_quotes (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  api_key_id TEXT NOT NULL,
  source_currency TEXT NOT NULL,
  destination_currency TEXT NOT NULL,
  source_amount_cents {{BIGINT}} NOT NULL,
  rate TEXT NOT NULL,
  destination_amount_cents {{BIGINT}} NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  expires_at_ms {{BIGINT}} NOT NULL,
  payment_id TEXT UNIQUE,
  used_at_ms {{BIGINT}},
  CHECK (source_currency <> destination_currency),
  CHECK (source_amount_cents > 0 AND destination_amount_cents > 0),
  CHECK ((payment_id IS NULL) = (used_at_ms IS NULL))
);
ALTER TABLE payments ADD COLUMN fx TEXT;
DROP INDEX accounts_one_system_account_per_currency;
`,
  },
  {
    version: 20,
    name: 'account controls: status, overdraft limit, minimum balance, the floor they set; the latest stamp',
    // Read with the balances (the same row, under the same lock), so a payment checks them in the transaction
    // that moves the money and concurrent payments can never breach them. Existing accounts become active and
    // unlimited: what they were. The no-overdraft CHECK becomes the floor the limits set (available >= minimum
    // − overdraft; 0 − 0 for every existing account), still enforced by the database itself. SQLite cannot
    // change a table's CHECK in place: the table is rebuilt (SQLite's documented twelve-step ALTER TABLE
    // procedure: the runner turns foreign keys off around the migrations and checks them before COMMIT).
    // stamped_at_ms: the latest instant on the account's entries and holds, so new ones are never stamped
    // earlier (src/domain/types.ts stampFor), whatever the writing process's clock says.
    sql: {
      sqlite: `
CREATE TABLE accounts_v20 (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('customer', 'system')),
  owner_customer_id TEXT REFERENCES customers (id),
  currency TEXT NOT NULL,
  number_enc TEXT NOT NULL,
  number_index TEXT NOT NULL UNIQUE,
  number_last4 TEXT NOT NULL,
  posted_balance_cents INTEGER NOT NULL DEFAULT 0,
  held_balance_cents INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  ${accountControlColumns('INTEGER')},
  CHECK (held_balance_cents >= 0),
  ${ACCOUNT_FLOOR_CHECK},
  CHECK ((kind = 'system') = (owner_customer_id IS NULL))
);
INSERT INTO accounts_v20 (seq, id, kind, owner_customer_id, currency, number_enc, number_index, number_last4,
                          posted_balance_cents, held_balance_cents, created_at_ms, stamped_at_ms)
  SELECT seq, id, kind, owner_customer_id, currency, number_enc, number_index, number_last4,
         posted_balance_cents, held_balance_cents, created_at_ms, ${latestStampSql('max', 'accounts')}
    FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_v20 RENAME TO accounts;
CREATE INDEX accounts_owner ON accounts (owner_customer_id);
`,
      postgres: `
ALTER TABLE accounts
  ADD COLUMN ${accountControlColumns('BIGINT').replaceAll(',\n  ', ',\n  ADD COLUMN ')};
DO $$
DECLARE name TEXT;
BEGIN
  SELECT conname INTO name FROM pg_constraint
   WHERE conrelid = 'accounts'::regclass AND contype = 'c'
     AND pg_get_constraintdef(oid) LIKE '%posted_balance_cents - held_balance_cents) >= 0%';
  EXECUTE format('ALTER TABLE accounts DROP CONSTRAINT %I', name);
END $$;
ALTER TABLE accounts ADD CONSTRAINT accounts_floor ${ACCOUNT_FLOOR_CHECK};
UPDATE accounts SET stamped_at_ms = ${latestStampSql('GREATEST', 'accounts')};
`,
    },
  },
  {
    version: 21,
    name: 'payment batches: the batch, its items, and the batch a payment was made in',
    // A batch (POST /v1/payment-batches, docs/decisions/0023-payment-batches.md) is written once, in the
    // transaction of its payments, and never changes: its counts are its items' fate at that moment (a held
    // item's payment may be approved later; GET /v1/payment-batches/:id shows the payment as it is now).
    // payment_batch_items is keyed (batch_id, item_index): the batch's page of items is a range of its primary
    // key. An item has its payment (posted, manual_review, declined) or an error (JSON, as answered).
    // payments.batch_id: the batch a payment came in (null for a single payment); no index, nothing lists by it.
    sql: `
CREATE TABLE payment_batches (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  atomic INTEGER NOT NULL,
  status TEXT NOT NULL,
  item_count INTEGER NOT NULL,
  counts TEXT NOT NULL,
  api_key_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  CHECK (atomic IN (0, 1)),
  CHECK (status IN ('completed', 'rejected')),
  CHECK (item_count BETWEEN 1 AND 1000)
);
CREATE TABLE payment_batch_items (
  batch_id TEXT NOT NULL,
  item_index INTEGER NOT NULL,
  status TEXT NOT NULL,
  payment_id TEXT,
  error TEXT,
  PRIMARY KEY (batch_id, item_index),
  CHECK ((payment_id IS NULL) <> (error IS NULL))
);
ALTER TABLE payments ADD COLUMN batch_id TEXT;
`,
  },
  {
    version: 22,
    name: 'regulatory reporting: report entries by type and time, compliance cases by status',
    // report_entries (docs/decisions/0025-regulatory-reporting.md): one row per payment and reporting rule that
    // fired, written in the payment's transaction. Ids and numbers only: the parties' names and account numbers
    // stay where they are (customers, accounts) and are read at export time. audit_index is the payment's audit
    // entry, appended in the same transaction (GET /v1/audit-logs/entries/:index, and its inclusion proof). A report
    // over a period is a range of report_entries_period; UNIQUE (rule_id, payment_id): a payment is in a
    // rule's report once. trigger_kind: amount, aggregate_24h or reason; reasons: the AML reason codes (JSON).
    // compliance_cases: a suspicious-activity candidate, opened in the same transaction, decided (filed or
    // dismissed) once by compliance; the decision's note is encrypted like a reviewer's note.
    sql: `
CREATE TABLE report_entries (
  seq {{SEQ}},
  report_type TEXT NOT NULL,
  rule_id TEXT NOT NULL,
  payment_id TEXT NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  audit_index {{BIGINT}} NOT NULL,
  jurisdiction TEXT NOT NULL,
  trigger_kind TEXT NOT NULL,
  window_total_cents {{BIGINT}},
  reasons TEXT NOT NULL,
  case_id TEXT,
  UNIQUE (rule_id, payment_id),
  CHECK (trigger_kind IN ('amount', 'aggregate_24h', 'reason'))
);
CREATE INDEX report_entries_period ON report_entries (report_type, created_at_ms, seq);
CREATE TABLE compliance_cases (
  seq {{SEQ}},
  id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  payment_id TEXT NOT NULL,
  rule_id TEXT NOT NULL,
  reasons TEXT NOT NULL,
  audit_index {{BIGINT}} NOT NULL,
  created_at_ms {{BIGINT}} NOT NULL,
  decided_at_ms {{BIGINT}},
  decided_by TEXT,
  decision_note_enc TEXT,
  CHECK (status IN ('open', 'filed', 'dismissed')),
  CHECK ((status = 'open') = (decided_at_ms IS NULL))
);
CREATE INDEX compliance_cases_status ON compliance_cases (status, seq);
`,
  },
];
