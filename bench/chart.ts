import { writeFileSync } from 'node:fs';

/** A small dependency-free SVG: payments/s (bars) and p99 latency (line) against concurrency. */
interface Point {
  concurrency: number;
  paymentsPerSecond: number;
  p99Ms: number;
}

export function writeChart(path: string, report: Record<string, unknown>): void {
  const series: { label: string; points: Point[] }[] = [];
  const sqlite = report['sqlite'] as { points: Point[] } | undefined;
  if (sqlite) series.push({ label: 'SQLite', points: sqlite.points });
  const scale = report['sqliteScale'] as { points: Point[] } | undefined;
  if (scale) series.push({ label: 'SQLite, 1M accounts', points: scale.points });
  const pgGroup = (report['postgres'] as Record<string, Point[]> | undefined)?.['postgres, group commit'];
  if (pgGroup) series.push({ label: 'PostgreSQL', points: pgGroup });
  const hello = report['helloWorldRequestsPerSecond'] as number;
  const width = 720;
  const height = 360;
  const pad = 50;
  const levels = [...new Set(series.flatMap((s) => s.points.map((p) => p.concurrency)))].sort(
    (a, b) => a - b,
  );
  const maxRate = Math.max(hello, ...series.flatMap((s) => s.points.map((p) => p.paymentsPerSecond)));
  const maxP99 = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.p99Ms)));
  const x = (i: number) => pad + ((width - 2 * pad) * (i + 0.5)) / levels.length;
  const yRate = (v: number) => height - pad - ((height - 2 * pad) * v) / maxRate;
  const yLat = (v: number) => height - pad - ((height - 2 * pad) * v) / maxP99;
  const colors = ['#2b6cb0', '#9c4221', '#2f855a'];
  const parts: string[] = [];
  parts.push(
    `<line x1="${pad}" x2="${width - pad}" y1="${yRate(hello)}" y2="${yRate(hello)}" stroke="#999" stroke-dasharray="4"/>`,
  );
  parts.push(
    `<text x="${pad + 4}" y="${yRate(hello) - 4}" font-size="11" fill="#666">hello-world ${hello} req/s</text>`,
  );
  // The other references of the same run (issue 15): (b) validated POST and (c) durable insert, at their peaks.
  const peaks = (report['sideBySide'] as { peaks?: Record<string, number | null> } | undefined)?.peaks;
  for (const [key, label] of [
    ['validatedPost', '(b) validated POST'],
    ['durableInsert', '(c) durable insert'],
  ] as const) {
    const v = peaks?.[key];
    if (typeof v !== 'number') continue;
    parts.push(
      `<line x1="${pad}" x2="${width - pad}" y1="${yRate(v)}" y2="${yRate(v)}" stroke="#bbb" stroke-dasharray="2"/>`,
    );
    parts.push(
      `<text x="${width - pad - 4}" y="${yRate(v) - 4}" font-size="11" fill="#666" text-anchor="end">${label} ${v} req/s</text>`,
    );
  }
  const barWidth = (width - 2 * pad) / levels.length / (series.length + 1);
  series.forEach((s, si) => {
    const color = colors[si % colors.length]!;
    const line: string[] = [];
    for (const p of s.points) {
      const i = levels.indexOf(p.concurrency);
      const bx = x(i) - (series.length / 2) * barWidth + si * barWidth;
      parts.push(
        `<rect x="${bx}" y="${yRate(p.paymentsPerSecond)}" width="${barWidth - 2}" height="${height - pad - yRate(p.paymentsPerSecond)}" fill="${color}" opacity="0.6"><title>${s.label} c=${p.concurrency}: ${p.paymentsPerSecond}/s</title></rect>`,
      );
      line.push(`${x(i)},${yLat(p.p99Ms)}`);
    }
    parts.push(`<polyline points="${line.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    parts.push(
      `<text x="${width - pad - 170}" y="${pad + 14 * si}" font-size="12" fill="${color}">■ ${s.label} (bars: /s, line: p99)</text>`,
    );
  });
  levels.forEach((c, i) => {
    parts.push(
      `<text x="${x(i)}" y="${height - pad + 16}" font-size="11" text-anchor="middle">c=${c}</text>`,
    );
  });
  parts.push(
    `<text x="${pad}" y="${pad - 20}" font-size="13">payments/s (left, max ${maxRate}) and p99 latency (right, max ${maxP99} ms) vs concurrency</text>`,
  );
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>\n`;
  writeFileSync(path, svg);
}
