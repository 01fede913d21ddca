import { assert } from '../domain/assert.ts';
import { AppError } from '../domain/errors.ts';
import { TEST_CLOCK_ADVANCE_SECONDS_MAX, TEST_CLOCK_OFFSET_MS_MAX } from '../domain/sandbox.ts';
import type { Actor } from '../domain/types.ts';
import type { Reads } from '../storage/store.ts';
import { seedDemoData } from './demo-data.ts';
import { type IdempotentReply, jsonOutcome, optionalIdempotentRequest, runIdempotent } from './idempotent.ts';
import { sweepOnce } from './maintenance.ts';
import { type Services, SYSTEM_ACTOR } from './services.ts';

/**
 * The sandbox's controls (docs/decisions/0026-sandbox.md): a clock a partner can move forward, and a reset.
 * Both exist only in test mode: the routes (src/http/routes/sandbox.ts) answer 403 TEST_MODE_ONLY to a live
 * key, and these functions assert that they were handed the test store.
 */

/** Where the test clock's offset is kept: in the test store, so every process of the sandbox shares it. */
export const TEST_CLOCK_SETTING = 'sandbox_clock_offset_ms';

/**
 * Test mode's time: the real clock plus an offset that only POST /v1/test/clock/advance moves (forward) and a
 * reset puts back to zero. Everything in test mode reads it (payments' stamps, velocity windows, hold expiry,
 * idempotency retention), so a partner can see a hold expire or a window close without waiting.
 */
export class TestClock {
  private offsetMs = 0;

  constructor(private readonly realClock: () => number) {}

  readonly now = (): number => this.realClock() + this.offsetMs;

  get offset(): number {
    return this.offsetMs;
  }

  private readsStarted = 0;
  private readsApplied = 0;

  /**
   * Reads the offset as stored: another process of the sandbox may have moved it, or a reset put it back. Of
   * two reads in flight the later one wins, whichever answers first.
   */
  async refresh(reads: Reads): Promise<void> {
    const ticket = ++this.readsStarted;
    const offsetMs = parseOffset(await reads.getSetting(TEST_CLOCK_SETTING));
    if (ticket < this.readsApplied) return;
    this.readsApplied = ticket;
    this.set(offsetMs);
  }

  /**
   * Background work (sweeps, deliveries, checkpoints) runs outside requests: it sees another process's move
   * within `intervalMs`. Returns the stop function.
   */
  follow(reads: Reads, intervalMs: number, onError: (error: unknown) => void): () => void {
    const timer = setInterval(() => void this.refresh(reads).catch(onError), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  set(offsetMs: number): void {
    assert(Number.isSafeInteger(offsetMs) && offsetMs >= 0, 'the test clock only runs ahead of real time');
    this.offsetMs = offsetMs;
  }
}

function parseOffset(stored: string | undefined): number {
  if (stored === undefined) return 0;
  const offsetMs = Number(stored);
  assert(Number.isSafeInteger(offsetMs) && offsetMs >= 0, 'the stored test clock offset is a whole ms count');
  return offsetMs;
}

export function testClockView(clock: TestClock) {
  return clockView(clock.now(), clock.offset);
}

function clockView(nowMs: number, offsetMs: number) {
  return { testClock: { now: new Date(nowMs).toISOString(), offsetSeconds: Math.floor(offsetMs / 1000) } };
}

function testClockOf(services: Services): TestClock {
  assert(
    services.mode === 'test' && services.testClock !== null,
    'sandbox controls run on the test store only',
  );
  return services.testClock;
}

/**
 * Moves test mode's time forward by `seconds`, then runs what falls due at once (hold expiry, purges), so
 * the answer comes after the effects: a hold past its expiry is released by the time this returns.
 */
export async function advanceTestClock(
  services: Services,
  actor: Actor,
  idempotencyKey: string | undefined,
  body: { seconds: number },
): Promise<IdempotentReply> {
  const clock = testClockOf(services);
  const { seconds } = body;
  assert(
    Number.isSafeInteger(seconds) && seconds >= 1 && seconds <= TEST_CLOCK_ADVANCE_SECONDS_MAX,
    'validated',
  );
  const request = optionalIdempotentRequest(actor, idempotencyKey, 'POST', '/v1/test/clock/advance', body);
  const reply = await runIdempotent(services, request, () => ({
    locks: { names: [TEST_CLOCK_SETTING] },
    execute: async (tx) => {
      const previousMs = parseOffset(await tx.getSetting(TEST_CLOCK_SETTING));
      const offsetMs = previousMs + seconds * 1000;
      if (offsetMs > TEST_CLOCK_OFFSET_MS_MAX) {
        throw new AppError(
          'VALIDATION_ERROR',
          'the test clock may run at most ten years ahead of real time: reset the sandbox to start again',
          [{ field: '/seconds', message: 'moves the test clock too far' }],
        );
      }
      await tx.putSetting(TEST_CLOCK_SETTING, String(offsetMs));
      await tx.appendAudit({
        eventType: 'sandbox.clock_advanced',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'sandbox',
        resourceId: 'test_clock',
        metadata: { seconds, offsetSeconds: Math.floor(offsetMs / 1000) },
      });
      // tx.nowMs is real time plus this process's offset; the answer is real time plus the new one.
      return jsonOutcome(200, clockView(tx.nowMs - clock.offset + offsetMs, offsetMs), null);
    },
  }));
  await clock.refresh(services.store.reads);
  await sweepOnce(services);
  return reply;
}

/**
 * Makes the reset a barrier for this process's test-mode requests: each request enters the gate and leaves it
 * when answered; a reset waits until none is in flight and holds new ones back until it is done. Without it a
 * request could read a payment before the reset and act on it after (a refund of a payment that is gone).
 * The wait is bounded (a request whose client vanished may never be answered): after RESET_DRAIN_MS the reset
 * goes ahead, and what such a request then finds gone is a 404, never an assertion.
 */
export const RESET_DRAIN_MS = 10_000;

export class SandboxGate {
  private inFlight = 0;
  private resetting: Promise<void> | null = null;
  private drained: (() => void) | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  async enter(): Promise<void> {
    while (this.resetting !== null) await this.resetting;
    this.inFlight += 1;
  }

  leave(): void {
    assert(this.inFlight > 0, 'a request leaves the gate it entered');
    this.inFlight -= 1;
    if (this.inFlight === 0) this.drained?.();
  }

  /** Runs `reset` with no test-mode request in flight; resets run one at a time. */
  exclusive<T>(reset: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      let open = (): void => {};
      this.resetting = new Promise((resolve) => {
        open = resolve;
      });
      try {
        await this.drain();
        return await reset();
      } finally {
        this.resetting = null;
        open();
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private async drain(): Promise<void> {
    if (this.inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.drained = resolve;
      timer = setTimeout(resolve, RESET_DRAIN_MS);
    });
    clearTimeout(timer);
    this.drained = null;
  }
}

/**
 * Deletes every piece of test data (payments, ledger, customers, accounts, audit log, webhooks, ...; not the
 * API keys), puts the test clock back to real time, and seeds the demo data again when the server seeds it.
 * One transaction, run alone. Not under an Idempotency-Key: the idempotency records are test data too, and a
 * repeated reset leaves what one leaves.
 */
export async function resetSandbox(
  services: Services,
  actor: Actor,
  options: { seedDemoData: boolean },
): Promise<{ sandbox: { resetAt: string; demoDataSeeded: boolean } }> {
  const clock = testClockOf(services);
  const resetAtMs = await services.committer.submit(
    async (tx) => {
      await tx.eraseSandboxData();
      await tx.putSetting(TEST_CLOCK_SETTING, '0');
      // The first entry of the new audit log: who reset it, and when.
      await tx.appendAudit({
        eventType: 'sandbox.reset',
        actorId: actor.apiKeyId,
        requestId: actor.requestId,
        resourceType: 'sandbox',
        resourceId: 'test_data',
        metadata: {},
      });
      return tx.nowMs;
    },
    { alone: true, names: [TEST_CLOCK_SETTING] },
  );
  clock.set(0);
  const demoDataSeeded = options.seedDemoData && (await seedDemoData(services, SYSTEM_ACTOR));
  return { sandbox: { resetAt: new Date(resetAtMs).toISOString(), demoDataSeeded } };
}
