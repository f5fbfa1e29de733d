// Syntax levels (a real parser, acorn) and the size budget, on the sources and the build output.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import * as acorn from 'acorn';
import { BUNDLES, MODULES } from '../scripts/build.mjs';
import { ROOT, source } from './harness.mjs';

const BUDGET_BYTES = 10240;
const ES5 = ['viz', 'cmp', 'collect'];

// Words IE8 (ES3) refuses as a property name after "." or as an unquoted object key.
const ES3_RESERVED = new Set(('break case catch class const continue debugger default delete do else enum export extends '
  + 'false finally for function if import in instanceof new null return super switch this throw true try typeof var '
  + 'void while with').split(' '));

function ie8Problems(code) {
  const problems = [];
  const tokens = [];
  const ast = acorn.parse(code, { ecmaVersion: 5, onToken: tokens });
  for (let i = 1; i < tokens.length; i++) {
    const t = tokens[i];
    if ((t.type.label === '}' || t.type.label === ']') && tokens[i - 1].type.label === ',') {
      problems.push(`trailing comma before ${t.type.label} at ${t.start}`);
    }
  }
  (function walk(node) {
    if (!node || typeof node.type !== 'string') return;
    if (node.type === 'MemberExpression' && !node.computed && ES3_RESERVED.has(node.property.name)) {
      problems.push(`.${node.property.name} at ${node.start}`);
    }
    if (node.type === 'Property' && node.key.type === 'Identifier' && ES3_RESERVED.has(node.key.name)) {
      problems.push(`key ${node.key.name} at ${node.start}`);
    }
    if (node.type === 'Property' && node.kind !== 'init') problems.push(`getter/setter at ${node.start}`);
    for (const v of Object.values(node)) {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v.type === 'string') walk(v);
    }
  })(ast);
  return problems;
}

const manifest = () => JSON.parse(readFileSync(join(ROOT, 'dist/manifest.json'), 'utf8'));

describe('syntax', () => {
  for (const name of ES5) {
    for (const minified of [false, true]) {
      test(`${name}.js ${minified ? 'minified ' : ''}parses as ECMAScript 5`, () => {
        assert.doesNotThrow(() => acorn.parse(source(name, { minified }), { ecmaVersion: 5 }));
      });
    }
  }

  for (const minified of [false, true]) {
    test(`viz.js ${minified ? 'minified ' : ''}avoids what IE8 cannot parse`, () => {
      assert.deepEqual(ie8Problems(source('viz', { minified })), []);
    });

    test(`recs.js ${minified ? 'minified ' : ''}parses as ES2017 (and is not mistaken for ES5)`, () => {
      assert.doesNotThrow(() => acorn.parse(source('recs', { minified }), { ecmaVersion: 2017 }));
      assert.throws(() => acorn.parse(source('recs', { minified }), { ecmaVersion: 5 }));
    });
  }

  test('the IE8 check catches what it is for', () => {
    assert.equal(ie8Problems('var a = {b: 1,};').length, 1);
    assert.equal(ie8Problems('p.catch(f);').length, 1);
    assert.equal(ie8Problems('var a = {default: 1};').length, 1);
    assert.deepEqual(ie8Problems('p["catch"](f); var a = {"default": 1};'), []);
  });

  test('the legacy and modern bundles parse as concatenated by viz-config', () => {
    const bundle = (files) => files.map((f) => readFileSync(join(ROOT, 'dist', f), 'utf8')).join('\n');
    assert.doesNotThrow(() => acorn.parse(bundle(BUNDLES.legacy), { ecmaVersion: 5 }));
    assert.doesNotThrow(() => acorn.parse(bundle(BUNDLES.modern), { ecmaVersion: 2017 }));
  });
});

describe('size budget', () => {
  test(`the four minified modules together are under ${BUDGET_BYTES} bytes`, () => {
    let raw = 0;
    let gzip = 0;
    const parts = [];
    for (const { name } of MODULES) {
      const code = source(name, { minified: true });
      const bytes = Buffer.byteLength(code);
      const gz = gzipSync(code, { level: 9 }).length;
      raw += bytes;
      gzip += gz;
      parts.push(`${name} ${bytes}/${gz}`);
    }
    console.log(`# tracker size: ${raw} B minified, ${gzip} B gzipped (budget ${BUDGET_BYTES} B) - ${parts.join(', ')}`);
    assert.ok(raw < BUDGET_BYTES, `${raw} B`);
    const m = manifest();
    assert.equal(m.total.bytes, raw);
    assert.equal(m.total.gzip, gzip);
  });

  test('manifest.json names every file with its size and hash, and the bundle order', () => {
    const m = manifest();
    assert.match(m.build, /^[0-9a-f]{16}$/);
    assert.deepEqual(Object.keys(m.files), ['viz.min.js', 'cmp.min.js', 'collect.min.js', 'recs.min.js']);
    for (const [file, f] of Object.entries(m.files)) {
      assert.equal(f.bytes, Buffer.byteLength(readFileSync(join(ROOT, 'dist', file))));
      assert.match(f.sha256, /^[0-9a-f]{64}$/);
    }
    assert.deepEqual(m.bundles, { legacy: ['cmp.min.js', 'collect.min.js'], modern: ['cmp.min.js', 'collect.min.js', 'recs.min.js'] });
  });
});
