// Khronos glTF validator over one file: `node validation/gltf_validate.mjs FILE` prints the report as JSON.
//
// The npm package gltf-validator has no command-line interface, only validateBytes(); this is
// the smallest wrapper that exposes it to Python (validation/gltf.py). Exit 0 with the report on
// stdout whatever the report says; exit 2 with a one-line reason on stderr when it cannot run.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename } from 'node:path';

const require = createRequire(import.meta.url);
let validator;
try {
  validator = require('gltf-validator');
} catch (err) {
  process.stderr.write(`gltf-validator npm package not found (run npm ci in the repository): ${err.message}\n`);
  process.exit(2);
}
const path = process.argv[2];
if (!path) {
  process.stderr.write('usage: node gltf_validate.mjs FILE.glb\n');
  process.exit(2);
}
let bytes;
try {
  bytes = new Uint8Array(readFileSync(path));
} catch (err) {
  process.stderr.write(`cannot read ${path}: ${err.message}\n`);
  process.exit(2);
}
try {
  const report = await validator.validateBytes(bytes, {
    uri: basename(path),
    maxIssues: 200,
    externalResourceFunction: () => Promise.reject(new Error('external resources are not allowed')),
  });
  process.stdout.write(JSON.stringify(report));
} catch (err) {
  process.stderr.write(`validator could not read ${path}: ${err}\n`);
  process.exit(2);
}
