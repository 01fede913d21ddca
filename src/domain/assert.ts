/**
 * Invariant assertions. A failed assertion means the program's own state is wrong (a bug, or corrupt
 * data), never that a client sent something bad: client mistakes are `AppError`s. We throw a dedicated
 * error type that the HTTP layer refuses to turn into a normal response; it crashes the process loudly
 * (see `src/main.ts`) so corrupt state is never committed or served.
 */
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantViolation(message);
}

export function assertSafeInteger(value: number, what: string): void {
  if (!Number.isSafeInteger(value)) throw new InvariantViolation(`${what} is not a safe integer: ${value}`);
}
