import { newId } from '../domain/ids.ts';
import type { Actor, ApiKey, Role } from '../domain/types.ts';
import { hashSecret, newSecret } from '../security/api-keys.ts';
import type { Services } from './services.ts';

export const DEMO_API_KEY_ID = 'key_demo_admin';

/** Creates an API key; the secret is returned once and only its hash is stored. */
export async function createApiKey(
  services: Services,
  actor: Actor,
  role: Role,
  name: string,
): Promise<{ key: ApiKey; secret: string }> {
  const secret = newSecret();
  const key: ApiKey = {
    id: newId('key'),
    name,
    role,
    secretHash: hashSecret(secret),
    createdAtMs: services.clock(),
    revokedAtMs: null,
    customerIds: null,
    expiresAtMs: null,
    previousSecretHash: null,
    previousSecretExpiresAtMs: null,
  };
  await services.committer.submit(async (tx) => {
    await tx.insertApiKey(key);
    await tx.appendAudit({
      eventType: 'api_key.created',
      actorId: actor.apiKeyId,
      requestId: actor.requestId,
      resourceType: 'api_key',
      resourceId: key.id,
      metadata: { apiKeyId: key.id, role },
    });
  });
  return { key, secret };
}

/** The workshop's demo token is an admin key whose secret comes from DEMO_API_TOKEN (hashed, like any other). */
export async function ensureDemoApiKey(services: Services, actor: Actor, token: string): Promise<void> {
  const key: ApiKey = {
    id: DEMO_API_KEY_ID,
    name: 'demo admin key (DEMO_API_TOKEN)',
    role: 'admin',
    secretHash: hashSecret(token),
    createdAtMs: services.clock(),
    revokedAtMs: null,
    customerIds: null,
    expiresAtMs: null,
    previousSecretHash: null,
    previousSecretExpiresAtMs: null,
  };
  await services.committer.submit(async (tx) => {
    const change = await tx.upsertDemoApiKey(key);
    if (change === 'unchanged') return;
    await tx.appendAudit({
      eventType: change === 'created' ? 'api_key.created' : 'api_key.rotated',
      actorId: actor.apiKeyId,
      requestId: actor.requestId,
      resourceType: 'api_key',
      resourceId: key.id,
      metadata: { apiKeyId: key.id, role: key.role },
    });
  });
}
