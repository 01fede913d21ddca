// A webhook receiver for this API, verified with the official Standard Webhooks library.
//
//   npm install                      # once, in the repository (standardwebhooks is a devDependency)
//   WEBHOOK_SECRET=whsec_... PORT=4000 node examples/webhook-receiver.mjs
//
// Register http(s)://<this host>:<PORT>/ as a webhook endpoint (POST /v1/webhook-endpoints, admin), put the
// secret from that response in WEBHOOK_SECRET, then send it a test event:
// POST /v1/webhook-endpoints/<id>/test. See docs/webhooks.md for what is signed and why each step matters.
//
// Plain JavaScript with node:http only, besides the library: copy it and replace `handle`.
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const BODY_MAX_BYTES = 1_000_000;
/** How many webhook-ids are remembered for deduplication (the oldest are forgotten first). */
const SEEN_MAX = 10_000;

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('set WEBHOOK_SECRET to the whsec_... secret of the endpoint');
  process.exit(2);
}
const port = Number(process.env.PORT ?? 4000);
const host = process.env.HOST ?? '127.0.0.1';

const webhook = new Webhook(standardSecret(secret));

/**
 * Secrets issued before this API spoke Standard Webhooks are whsec_ + base64url, which the library cannot
 * decode: the same bytes in standard base64 are the same key. Better still, rotate the secret
 * (POST /v1/webhook-endpoints/<id>/rotate-secret) and use the new one.
 */
function standardSecret(value) {
  const encoded = value.startsWith('whsec_') ? value.slice('whsec_'.length) : value;
  if (/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) && encoded.length % 4 === 0) return value;
  console.warn('WEBHOOK_SECRET is an older base64url secret: using its bytes; rotate it when you can');
  return `whsec_${Buffer.from(encoded, 'base64url').toString('base64')}`;
}

/**
 * Delivery is at least once: the same event can arrive again (a retry after a lost answer, a manual retry).
 * Its webhook-id stays the same, so a bounded memory of the ids handled makes handling happen once. A real
 * receiver keeps this in its database, in the same transaction as the effect of the event.
 */
const seen = new Set();
function remember(id) {
  seen.add(id);
  if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
}

/** Your business logic. Answer quickly: a slow answer (over WEBHOOK_TIMEOUT_MS) counts as a failure. */
function handle(event) {
  switch (event.type) {
    case 'ping':
      console.log(`ping for endpoint ${event.data.webhookEndpointId}`);
      break;
    case 'payment.posted':
    case 'payment.refunded':
      console.log(`${event.type}: payment ${event.data.payment.id}, ${event.data.payment.amountCents} cents`);
      break;
    default:
      console.log(`${event.type} (${event.id})`);
  }
}

const server = createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > BODY_MAX_BYTES) {
      res.writeHead(413).end();
      req.destroy();
    } else chunks.push(chunk);
  });
  req.on('end', () => {
    // Verify the raw bytes as received, before any JSON parsing: re-serialised JSON would not match.
    const rawBody = Buffer.concat(chunks).toString('utf8');
    let event;
    try {
      // Checks webhook-timestamp against now (5 minutes either way) and every v1 signature in the header
      // (there are two during a secret rotation); returns the parsed body.
      event = webhook.verify(rawBody, req.headers);
    } catch (error) {
      console.warn(`rejected: ${error.message}`);
      res.writeHead(400).end();
      return;
    }
    const id = req.headers['webhook-id'];
    if (seen.has(id)) {
      console.log(`duplicate ${id}: already handled`);
      res.writeHead(204).end();
      return;
    }
    try {
      handle(event);
    } catch (error) {
      // Not remembered: a non-2xx answer makes the API retry later.
      console.error(`failed to handle ${id}: ${error.message}`);
      res.writeHead(500).end();
      return;
    }
    remember(id);
    console.log(`verified ${event.type} ${id}`);
    res.writeHead(204).end();
  });
});

server.listen(port, host, () => console.log(`webhook receiver listening on http://${host}:${port}/`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
