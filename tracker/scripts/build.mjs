// Minifies each module of src/ into dist/*.min.js and writes dist/manifest.json (sizes, hashes,
// bundle order). Deterministic: the same sources give byte-identical output, so `build` (the
// content hash) can be part of the version viz-config puts into bundle URLs.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { minify } from 'terser';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// ecma: the syntax level the output must stay within; ie8 keeps viz.js safe for old engines
// (quoted reserved-word properties, no trailing commas, named function expression quirks).
export const MODULES = [
  { name: 'viz', ecma: 5, ie8: true },
  { name: 'cmp', ecma: 5, ie8: false },
  { name: 'collect', ecma: 5, ie8: false },
  { name: 'recs', ecma: 2017, ie8: false },
];

// The config server serves viz.min.js inside the config script and concatenates the enabled
// modules, in this order, joined with "\n", into the domain bundle.
export const BUNDLES = {
  legacy: ['cmp.min.js', 'collect.min.js'],
  modern: ['cmp.min.js', 'collect.min.js', 'recs.min.js'],
};

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

export async function build() {
  const dist = join(root, 'dist');
  await mkdir(dist, { recursive: true });
  const files = {};
  const all = createHash('sha256');
  let raw = 0;
  let gzip = 0;
  for (const mod of MODULES) {
    const src = await readFile(join(root, 'src', `${mod.name}.js`), 'utf8');
    const out = await minify(src, {
      ecma: mod.ecma,
      ie8: mod.ie8,
      safari10: true,
      compress: { passes: 2 },
      mangle: true,
      format: { comments: false, ascii_only: true },
    });
    // Always end with ";" so any concatenation order is safe.
    const code = out.code.endsWith(';') ? out.code : `${out.code};`;
    const file = `${mod.name}.min.js`;
    await writeFile(join(dist, file), code);
    const bytes = Buffer.byteLength(code);
    const gz = gzipSync(code, { level: 9 }).length;
    files[file] = { bytes, gzip: gz, sha256: sha256(code), ecma: mod.ecma };
    all.update(`${file}\0${code}\0`);
    raw += bytes;
    gzip += gz;
  }
  const manifest = {
    build: all.digest('hex').slice(0, 16),
    files,
    bundles: BUNDLES,
    total: { bytes: raw, gzip, budget_bytes: 10240 },
  };
  await writeFile(join(dist, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const m = await build();
  for (const [file, f] of Object.entries(m.files)) {
    console.log(`${file.padEnd(16)} ${String(f.bytes).padStart(6)} B  ${String(f.gzip).padStart(5)} B gzip`);
  }
  console.log(`${'total'.padEnd(16)} ${String(m.total.bytes).padStart(6)} B  ${String(m.total.gzip).padStart(5)} B gzip  (budget ${m.total.budget_bytes} B)  build ${m.build}`);
}
