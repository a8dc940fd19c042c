'use strict';
// The docs checked against the code, without running anything (part of `npm run test:quick`):
// the option and error tables against src/primary/options.ts and src/shared/errors.ts, every
// relative link and anchor, every example marked, every page opening with what it is for.
// test/docs.test.js runs the examples themselves.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { ErrorCodes } = require('..');
const { OPTION_NAMES, LISTEN_OPTION_NAMES } = require('../lib/primary/options');
const md = require('./helpers/markdown');

/** The lines of `page` from the heading `heading` up to the next heading of the same or a higher level. */
function section(page, heading) {
  const lines = md.read(page).split('\n');
  const start = lines.findIndex((l) => l.trim() === heading);
  assert.ok(start >= 0, `${page} has no "${heading}" heading`);
  const level = heading.match(/^#+/)[0].length;
  let end = start + 1;
  while (end < lines.length && !(/^#+ /.test(lines[end]) && lines[end].match(/^#+/)[0].length <= level)) end++;
  return lines.slice(start, end).join('\n');
}

describe('docs: tables, links and markers', function () {
  it('every documented option is known, and every known option is documented', () => {
    const table = section('docs/configuration.md', '## Options');
    const documented = table.split('\n').filter((l) => l.startsWith('| `')).flatMap((l) => [...l.split('|')[1].matchAll(/`(\w+)`/g)].map((m) => m[1]));
    assert.ok(documented.length >= 15, `only ${documented.length} options found in the docs/configuration.md table`);
    for (const name of documented) assert.ok(name in OPTION_NAMES, `docs/configuration.md documents "${name}", which Dispatcher.start() rejects`);
    for (const name of Object.keys(OPTION_NAMES)) assert.ok(documented.includes(name), `option "${name}" is not in the docs/configuration.md table`);
    const listenRow = table.split('\n').find((l) => l.startsWith('| `listen`'));
    for (const name of Object.keys(LISTEN_OPTION_NAMES)) assert.ok(listenRow.includes(name), `listen's "${name}" is not in the docs/configuration.md table`);
  });

  it('every error code is in the catalogue, and no page names an unknown one', () => {
    const table = section('docs/configuration.md', '## Error codes');
    const rows = table.split('\n').filter((l) => l.startsWith('| `')).map((l) => /^\| `(\w+)`/.exec(l)[1]);
    for (const code of Object.keys(ErrorCodes)) assert.ok(rows.includes(code), `${code} missing from the table in docs/configuration.md`);
    for (const code of rows) assert.ok(code in ErrorCodes, `docs/configuration.md lists unknown ${code}`);
    for (const page of md.pages()) {
      for (const [, code] of md.read(page).matchAll(/(ERR_HERDLESS_[A-Z_]+)/g)) assert.ok(code in ErrorCodes, `${page} names unknown ${code}`);
    }
  });

  it('the README is a front door: at most 250 lines', () => {
    const n = md.read('README.md').split('\n').length;
    assert.ok(n <= 250, `README.md has ${n} lines`);
  });

  it('every docs page opens with its title, then what the reader can do after reading it', () => {
    for (const page of md.pages().filter((p) => p.startsWith('docs/'))) {
      const [title, ...rest] = md.read(page).split('\n');
      assert.match(title, /^# \S/, `${page}: the first line is not a title`);
      const first = rest.find((l) => l.trim() !== '');
      assert.match(first, /^After reading this page you /, `${page}: the first paragraph should say what the reader can do after reading it`);
    }
  });

  it('every relative link and image points at a file that exists, and every anchor at a heading', () => {
    let count = 0;
    for (const page of md.pages()) {
      for (const { target, anchor, line } of md.links(page)) {
        const file = target === '' ? page : path.normalize(path.join(path.dirname(page), target));
        assert.ok(fs.existsSync(path.join(md.ROOT, file)), `${page}:${line}: ${target} does not exist`);
        if (anchor && file.endsWith('.md')) assert.ok(md.anchors(file).has(anchor), `${page}:${line}: ${file} has no heading #${anchor}`);
        count++;
      }
    }
    assert.ok(count >= 30, `only ${count} links checked`);
  });

  it('every JavaScript and shell example is runnable, a file, or deliberately not run (with a reason)', () => {
    const all = md.pages().flatMap(md.examples);
    const runnable = all.filter((b) => b.attrs.runnable);
    assert.ok(runnable.length >= 5, `only ${runnable.length} runnable examples`);
    for (const page of md.pages()) {
      const files = md.examples(page).filter((b) => b.attrs.file).map((b) => b.attrs.file);
      assert.deepEqual(files, [...new Set(files)], `${page}: a file=NAME block per name (the examples share one folder)`);
    }
    for (const b of all) {
      const where = `${b.page}:${b.line}`;
      const marked = b.attrs.runnable || b.attrs.file || b.marker?.kind === 'not runnable';
      assert.ok(marked, `${where}: a \`\`\`${b.lang} block must be marked runnable, file=NAME, or preceded by <!-- not runnable: why -->`);
      if (b.marker) assert.ok(b.marker.reason.length >= 10, `${where}: say why (${b.marker.kind}: "${b.marker.reason}")`);
      if (b.marker?.kind === 'not runnable') assert.ok(!b.attrs.runnable, `${where}: marked both runnable and not runnable`);
      if (b.marker?.kind === 'pending') assert.ok(b.attrs.runnable, `${where}: pending applies to a runnable block`);
      if (b.attrs.runnable) assert.ok([true, 'server'].includes(b.attrs.runnable), `${where}: runnable or runnable=server`);
    }
  });
});
