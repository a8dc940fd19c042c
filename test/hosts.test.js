'use strict';
// The quick, unprivileged half of `npm run test:hosts` (test/hosts/run.js): the HAProxy
// configuration it runs is the one docs/deployment.md shows, and without its tools (or
// root) it says why it skips and exits 0 rather than failing or passing silently.
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

describe('test:hosts (two hosts behind HAProxy)', () => {
  it('runs the HAProxy configuration that docs/deployment.md shows, verbatim', () => {
    const cfg = fs.readFileSync(path.join(ROOT, 'docs/haproxy.cfg'), 'utf8');
    const docs = fs.readFileSync(path.join(ROOT, 'docs/deployment.md'), 'utf8');
    const section = docs.slice(docs.indexOf('\n## More than one host'));
    assert.ok(section.length > 1, 'docs/deployment.md has a "## More than one host" section');
    assert.ok(section.includes('```haproxy\n' + cfg + '```\n'), 'the section shows docs/haproxy.cfg in a ```haproxy block, byte for byte');
  });

  it('prints a SKIP line and exits 0 when it cannot run (no root, or no ip/haproxy)', (done) => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-nopath-'));
    execFile(process.execPath, [path.join(ROOT, 'test/hosts/run.js')], { env: { ...process.env, PATH: empty } }, (err, stdout, stderr) => {
      fs.rmSync(empty, { recursive: true, force: true });
      assert.strictEqual(err, null, `exit status 0 expected; stderr: ${stderr}`);
      assert.match(stdout, /^SKIP test:hosts: (needs root|`ip` \(iproute2\) not found)/m);
      done();
    });
  });
});
