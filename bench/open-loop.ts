import http from 'node:http';

/**
 * An open-loop load generator: requests are sent on a fixed schedule (`ratePerSecond`), whether or not earlier
 * ones have been answered, and each latency is measured from the moment the request was due, not from when it
 * was sent. So a stall shows in the latencies of every request it delays (no coordinated omission).
 *
 * The first `warmupS` seconds run on the same schedule but are not counted: they open the client's keep-alive
 * connections (a new TCP connection per request at first) and bring the server to a steady state.
 *
 * Why not autocannon's `overallRate`: it gives each connection a per-second quota that it spends as fast as it
 * can at the start of every second, then idles. That is a burst at full load once a second, and its latencies
 * are those of the burst, not of a steady 80 % load.
 */
export interface OpenLoopRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface OpenLoopResult {
  ratePerSecond: number;
  sent: number;
  completed: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  statuses: Record<string, number>;
  errors: number;
}

const TICK_MS = 1;
const SOCKETS_MAX = 1024;

export async function openLoop(
  baseUrl: string,
  ratePerSecond: number,
  durationS: number,
  makeRequest: () => OpenLoopRequest,
  warmupS = 2,
): Promise<OpenLoopResult> {
  const url = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: SOCKETS_MAX });
  const latenciesMs: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let sent = 0;
  const warmup = Math.round(ratePerSecond * warmupS);
  const total = warmup + Math.round(ratePerSecond * durationS);
  const t0 = performance.now();
  const inFlight = new Set<Promise<void>>();

  const send = (dueMs: number, counted: boolean): void => {
    const r = makeRequest();
    const done = new Promise<void>((resolve) => {
      const req = http.request(
        { host: url.hostname, port: url.port, path: r.path, method: 'POST', headers: r.headers, agent },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (counted) {
              latenciesMs.push(performance.now() - dueMs);
              statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
            }
            resolve();
          });
        },
      );
      req.on('error', () => {
        if (counted) errors += 1;
        resolve();
      });
      req.end(r.body);
    });
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  };

  while (sent < total) {
    const elapsedMs = performance.now() - t0;
    const due = Math.min(total, Math.floor((elapsedMs * ratePerSecond) / 1000));
    for (; sent < due; sent++) send(t0 + (sent * 1000) / ratePerSecond, sent >= warmup);
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  await Promise.all(inFlight);
  agent.destroy();
  latenciesMs.sort((a, b) => a - b);
  const at = (q: number) =>
    +(latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(q * latenciesMs.length))] ?? 0).toFixed(1);
  return {
    ratePerSecond,
    sent: sent - warmup,
    completed: latenciesMs.length,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: at(1),
    statuses,
    errors,
  };
}
