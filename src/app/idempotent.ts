import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import {
  type IdempotencyVerdict,
  idempotencyScope,
  isSealedBody,
  judgeIdempotency,
  RESPONSE_BODY_CONTEXT,
  requestFingerprint,
  type StoredResponse,
} from '../domain/idempotency.ts';
import type { Actor } from '../domain/types.ts';
import type { PiiCipher } from '../security/pii-cipher.ts';
import type { LockHints, Tx } from '../storage/store.ts';
import type { Services } from './services.ts';

/**
 * "Run this command under an Idempotency-Key", with the payments semantics (docs/decisions/0005):
 *
 *   fast path  a committed record under the key is replayed (or its reuse with another payload refused)
 *              before anything else is read or queued;
 *   plan       otherwise the caller's pre-reads (which accounts to lock, a DNS check, encryption) run, and
 *   command    in ONE transaction, under the key's lock: the authoritative claim (replay, 409, or claimed),
 *              the caller's effects, and the record with the exact response bytes, sealed.
 *
 * What is stored follows from where the record is written: in the command's transaction. A command that
 * completes (2xx, and a payment's 422 decline, which is itself a stored payment) commits its record with its
 * effects; a command that throws (any error envelope: 4xx business rules, 404) rolls back its claim with
 * everything else, so the key stays free and a retry runs again on the state it then finds.
 */
export interface IdempotentRequest {
  apiKeyId: string;
  key: string;
  /** `POST /v1/payments/pay_…/refunds`: the method and path the fingerprint covers; named in a 409. */
  route: string;
  fingerprint: string;
  /** Set once `fingerprint` is keyed (runIdempotent): the plain digest, which older records may hold. */
  plainFingerprint?: string;
}

export interface IdempotentReply extends StoredResponse {
  /** true: the stored answer; false: executed now; null: no Idempotency-Key was sent (nothing to say). */
  replayed: boolean | null;
}

/** What a command produced: its response (status and exact body) and the resource it created or changed. */
export interface IdempotentOutcome extends StoredResponse {
  resourceId: string | null;
}

export interface IdempotentCommand {
  /** The command's own lock hints; the key's lock is added here. */
  locks?: LockHints;
  /**
   * `discard` (for a command whose locks say `discardable`) undoes everything the command did so far and
   * claims the key again, so that the command can record another outcome instead (an atomic payment batch's
   * refusal, src/app/payment-batches.ts).
   */
  execute(tx: Tx, discard: () => Promise<void>): Promise<IdempotentOutcome>;
}

/**
 * The request's identity under its key: the fingerprint covers the method, the path with the resource id and
 * the body as the endpoint reads it (canonical JSON: key order and whitespace do not count, values do).
 */
export function idempotentRequest(
  actor: Pick<Actor, 'apiKeyId'>,
  key: string,
  method: string,
  path: string,
  body: unknown,
): IdempotentRequest {
  return {
    apiKeyId: actor.apiKeyId,
    key,
    route: `${method} ${path}`,
    fingerprint: requestFingerprint(method, path, body),
  };
}

/** The same, for routes where the header is optional: no key, no idempotency. */
export function optionalIdempotentRequest(
  actor: Pick<Actor, 'apiKeyId'>,
  key: string | undefined,
  method: string,
  path: string,
  body: unknown,
): IdempotentRequest | null {
  return key === undefined ? null : idempotentRequest(actor, key, method, path, body);
}

/** The lock hint naming the key (`LockHints.idempotencyKeys`): locked, and its record read with the batch. */
export function idempotencyLock(request: IdempotentRequest): string {
  return idempotencyScope(request.apiKeyId, request.key);
}

/**
 * The whole shape: fast path, plan, then the command with claim and completion. `readFirst: false` skips the
 * fast path (payments: the batch reads the record with its accounts anyway, so a replay costs no query and a
 * fresh request none extra). `plan` runs only when the fast path did not answer.
 */
export async function runIdempotent(
  services: Services,
  request: IdempotentRequest | null,
  plan: () => Promise<IdempotentCommand> | IdempotentCommand,
  options: { readFirst?: boolean } = {},
): Promise<IdempotentReply> {
  request = request === null ? null : keyedFingerprint(services.cipher, request);
  if (request !== null && options.readFirst !== false) {
    const early = await replayCommitted(services, request);
    if (early !== null) return early;
  }
  const { locks, execute } = await plan();
  const hints =
    request === null
      ? locks
      : { ...locks, idempotencyKeys: [...(locks?.idempotencyKeys ?? []), idempotencyLock(request)] };
  return services.committer.submit(async (tx) => {
    if (request !== null) {
      const stored = await claimOrReplay(tx, services, request);
      if (stored !== null) return stored;
    }
    const discard = async () => {
      await tx.discardCommand();
      // The claim went with everything else; under the key's lock nothing can have taken it meanwhile.
      if (request !== null)
        assert((await claimOrReplay(tx, services, request)) === null, 'a discarded claim is claimed again');
    };
    const outcome = await execute(tx, discard);
    if (request === null) return { statusCode: outcome.statusCode, body: outcome.body, replayed: null };
    return completeIdempotent(tx, services, request, outcome);
  }, hints);
}

/**
 * The fingerprint as stored: an HMAC (the blind-index key, which no rotation changes) of the request's SHA-256
 * digest. A plain digest of `{name, documentReference}` or of a refund's reason could be tested against
 * guesses by anyone holding a copy of the database; a keyed one cannot. Records stored with the plain digest
 * (before this) still match it until they expire.
 */
function keyedFingerprint(cipher: PiiCipher, request: IdempotentRequest): IdempotentRequest {
  if (request.plainFingerprint !== undefined) return request;
  return {
    ...request,
    fingerprint: cipher.blindIndex(request.fingerprint, FINGERPRINT_CONTEXT),
    plainFingerprint: request.fingerprint,
  };
}

const FINGERPRINT_CONTEXT = 'idempotency.fingerprint';

/** The fast path: the committed record, judged. Not authoritative (the command's claim is), only cheap. */
export async function replayCommitted(
  services: Services,
  request: IdempotentRequest,
): Promise<IdempotentReply | null> {
  const stored = await services.store.reads.findIdempotencyRecord(request.apiKeyId, request.key);
  return replyFor(
    services.cipher,
    request,
    judgeIdempotency(stored, request.fingerprint, services.clock(), request.plainFingerprint),
  );
}

/**
 * Inside the command, under the key's lock (declared with `idempotencyLock`): claims the key, or answers
 * from the record already stored under it (a replay, or a 409 for another payload). Null: claimed, run it.
 */
export async function claimOrReplay(
  tx: Tx,
  services: Services,
  request: IdempotentRequest,
): Promise<IdempotentReply | null> {
  const expiresAtMs = tx.nowMs + services.idempotencyRetentionMs;
  const claim = await tx.claimIdempotencyKey(request.apiKeyId, request.key, request.fingerprint, expiresAtMs);
  if (claim === 'claimed') return null;
  return replyFor(
    services.cipher,
    request,
    judgeIdempotency(claim, request.fingerprint, tx.nowMs, request.plainFingerprint),
  );
}

/** Completes a claimed key in the same transaction: the record keeps the exact bytes, sealed. */
export async function completeIdempotent(
  tx: Tx,
  services: Services,
  request: IdempotentRequest,
  outcome: IdempotentOutcome,
): Promise<IdempotentReply> {
  const sealed = services.cipher.encrypt(outcome.body, RESPONSE_BODY_CONTEXT);
  await tx.completeIdempotencyKey(
    request.apiKeyId,
    request.key,
    { statusCode: outcome.statusCode, body: sealed },
    outcome.resourceId,
  );
  return { statusCode: outcome.statusCode, body: outcome.body, replayed: false };
}

/** A verdict as a reply (the stored bytes, opened), a 409, or null (fresh: run it). */
function replyFor(
  cipher: PiiCipher,
  request: IdempotentRequest,
  verdict: IdempotencyVerdict,
): IdempotentReply | null {
  if (verdict.kind === 'fresh') return null;
  if (verdict.kind === 'mismatch') {
    throw new AppError(
      'IDEMPOTENCY_KEY_REUSED_WITH_DIFFERENT_PAYLOAD',
      `this Idempotency-Key was already used for a different request (this one is ${request.route})`,
    );
  }
  const { statusCode, body } = verdict.response;
  // Records written before bodies were sealed hold the JSON itself; they replay as they are.
  const opened = isSealedBody(body) ? cipher.decrypt(body, RESPONSE_BODY_CONTEXT) : body;
  return { statusCode, body: opened, replayed: true };
}

/** A JSON response as the endpoint sends it: these bytes are what every replay repeats. */
export function jsonOutcome(
  statusCode: number,
  value: unknown,
  resourceId: string | null,
): IdempotentOutcome {
  return { statusCode, body: JSON.stringify(value), resourceId };
}
