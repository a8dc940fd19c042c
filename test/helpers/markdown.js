'use strict';
// The project's Markdown, read the way the docs tests need it: its pages, their fenced code
// blocks with how each is marked, its relative links and its headings' anchors.
//
// How an example is marked (CONTRIBUTING.md, "Examples in the docs"):
//   ```js file=app.js         written into the page's example folder, for later examples
//   ```js runnable            run to completion: it must exit 0
//   ```sh runnable=server     a server: started, asked GET / once (200), stopped with SIGINT
//                             to its process group (Ctrl-C), and it must exit 0
//   <!-- not runnable: why --> on the line before the fence: deliberately not run
//   <!-- pending: why -->      before a runnable block that cannot pass yet: the test expects it
//                             to fail, and fails once it passes, so that the marker goes
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');
/** Languages whose blocks are examples: every such block must be marked one way or another. */
const EXAMPLE_LANGS = new Set(['js', 'javascript', 'mjs', 'cjs', 'sh', 'bash', 'shell', 'console']);

/** README.md, CONTRIBUTING.md and every docs/*.md, as paths relative to the repository root. */
function pages() {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', 'CONTRIBUTING.md', ...docs].filter((p) => fs.existsSync(path.join(ROOT, p)));
}

function read(page) {
  return fs.readFileSync(path.join(ROOT, page), 'utf8');
}

/**
 * Every fenced block of `page`: { page, line (1-based, of the opening fence), lang, attrs
 * ({ runnable?: true | 'server', file?: name }), marker ({ kind: 'not runnable' | 'pending',
 * reason } or null), code }.
 */
function blocks(page) {
  const lines = read(page).split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^`\s]*)\s*(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang, rest] = open;
    let j = i + 1;
    while (j < lines.length && !(lines[j].startsWith(indent + fence[0].repeat(fence.length)) && lines[j].trim() === fence)) j++;
    const attrs = {};
    for (const word of rest.split(/\s+/).filter(Boolean)) {
      const [key, value] = word.split('=');
      if (key === 'runnable') attrs.runnable = value === 'server' ? 'server' : value === undefined ? true : value;
      else if (key === 'file') attrs.file = value;
      else attrs[key] = value ?? true;
    }
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const m = k >= 0 ? /^<!--\s*(not runnable|pending)\s*:\s*(.*?)\s*-->$/.exec(lines[k].trim()) : null;
    out.push({
      page,
      line: i + 1,
      lang: lang.toLowerCase(),
      attrs,
      marker: m ? { kind: m[1], reason: m[2] } : null,
      code: lines.slice(i + 1, j).map((l) => l.slice(indent.length)).join('\n') + '\n',
    });
    i = j;
  }
  return out;
}

/** The blocks of `page` that are examples (JavaScript or shell). */
function examples(page) {
  return blocks(page).filter((b) => EXAMPLE_LANGS.has(b.lang));
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading) {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of `page`'s headings (outside code blocks), with GitHub's -1, -2 for repeats. */
function anchors(page) {
  const seen = new Map();
  const out = new Set();
  let inCode = false;
  for (const line of read(page).split('\n')) {
    if (/^\s*(`{3,}|~{3,})/.test(line)) inCode = !inCode;
    const h = !inCode && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = slug(h[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Relative links and images of `page` (outside code blocks): { target, anchor, line }. */
function links(page) {
  const out = [];
  let inCode = false;
  read(page)
    .split('\n')
    .forEach((line, i) => {
      if (/^\s*(`{3,}|~{3,})/.test(line)) inCode = !inCode;
      if (inCode) return;
      for (const [, href] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(href)) continue; // http:, https:, mailto:
        const [target, anchor] = href.split('#');
        out.push({ target, anchor, line: i + 1 });
      }
    });
  return out;
}

module.exports = { ROOT, EXAMPLE_LANGS, pages, read, blocks, examples, anchors, links, slug };
