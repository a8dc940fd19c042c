'use strict';
// A throwaway self-signed certificate for localhost, made with the openssl CLI.
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

/** Writes key.pem and cert.pem into `dir`; returns { keyPath, certPath, key, cert }. */
function makeCert(dir) {
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-days', '1', '-keyout', keyPath, '-out', certPath], { stdio: 'pipe' });
  return { keyPath, certPath, key: fs.readFileSync(keyPath), cert: fs.readFileSync(certPath) };
}

module.exports = { makeCert };
