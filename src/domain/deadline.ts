/**
 * A bound on how long a caller waits for something it does not control (a database that stopped answering): the
 * answer, or DeadlineExceeded after `ms`. The awaited work is not cancelled; its late result or failure is
 * dropped (never an unhandled rejection).
 */
export class DeadlineExceeded extends Error {
  override name = 'DeadlineExceeded';
}

export async function withinMs<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
