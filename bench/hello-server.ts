import Fastify from 'fastify';

/** The ceiling: a fastify hello-world on the same machine, measured in the same benchmark run. */
const app = Fastify({ logger: false });
app.get('/hello', async () => ({ hello: 'world' }));
const port = Number(process.env['PORT'] ?? 3999);
await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`listening ${port}\n`);
