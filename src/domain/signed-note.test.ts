import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuditSigner } from '../security/audit-signer.ts';
import { checkpointBody, noteKeyHash, verifierKey } from './signed-note.ts';

/**
 * The signed-note wire format against other implementations' published vectors: the PeterNeumann key and
 * note of golang.org/x/mod/sumdb/note (Ed25519 is deterministic, so our signature must match byte for byte)
 * and the example verifier key of the C2SP signed-note specification.
 */
const GO_SIGNER_KEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_VERIFIER_KEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT =
  "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

function goSigner(): AuditSigner {
  // "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>"; the base64 itself may contain '+'.
  const typedSeed = Buffer.from(GO_SIGNER_KEY.split('+').slice(4).join('+'), 'base64');
  assert.equal(typedSeed[0], 0x01);
  return AuditSigner.fromConfig(typedSeed.subarray(1).toString('base64'), 'PeterNeumann');
}

test('the Go sumdb/note vector: same verifier key, same signed note', () => {
  const signer = goSigner();
  assert.equal(signer.verifierKey(), GO_VERIFIER_KEY);
  assert.equal(signer.signNote(GO_TEXT), GO_NOTE);
});

test('the C2SP signed-note example key hash', () => {
  const typedKey = Buffer.from('AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k', 'base64');
  assert.equal(noteKeyHash('example.com/foo', typedKey.subarray(1)).toString('hex'), '530d903a');
  assert.equal(
    verifierKey('example.com/foo', typedKey.subarray(1)),
    'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k',
  );
});

test('a PKCS#8 PEM key signs exactly like its seed', () => {
  const seed = goSigner();
  const pem = [
    '-----BEGIN PRIVATE KEY-----',
    Buffer.concat([
      Buffer.from('302e020100300506032b657004220420', 'hex'),
      Buffer.from('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz', 'base64').subarray(1),
    ]).toString('base64'),
    '-----END PRIVATE KEY-----',
  ].join('\n');
  assert.equal(AuditSigner.fromConfig(pem, 'PeterNeumann').signNote(GO_TEXT), seed.signNote(GO_TEXT));
});

test('a checkpoint body is origin, size and base64 root, one per line', () => {
  assert.equal(
    checkpointBody('example.com/log', 923748, Buffer.alloc(32, 1)),
    `example.com/log\n923748\n${Buffer.alloc(32, 1).toString('base64')}\n`,
  );
  assert.throws(() => checkpointBody('has space', 1, Buffer.alloc(32)));
});
