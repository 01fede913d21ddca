import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

/** One request a receiver got: its headers, raw body, and the status it answered. */
export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

/** A webhook receiver on 127.0.0.1 answering each request with the next scripted status (then 200). */
export class Receiver {
  readonly received: Received[] = [];
  private readonly server: Server;
  private readonly script: number[] = [];
  url = '';
  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const answered = this.script.shift() ?? 200;
        this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered });
        res.writeHead(answered).end();
      });
    });
  }
  async start(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}/hooks`;
    return this;
  }
  answerNext(...statuses: number[]): void {
    this.script.push(...statuses);
  }
  forEvent(eventId: string): Received[] {
    return this.received.filter((r) => r.headers['webhook-id'] === eventId);
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
  }
}
