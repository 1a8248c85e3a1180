// Makes a JavaScript rule module a component of the `rule-module` world:
//   node guest/js/build.mjs SOURCE.js WIT_DIR OUT.wasm
// WASI's HTTP interfaces are left out: a rule module posts through the
// host's `webhook` action, and velonotify's host offers no HTTP to modules.
// componentize-js is pinned to 0.23.0: the bindings of 0.22 ran a
// component-model task (promises, task objects) around every call, ten times
// the cost of a rule's own work. preview2-shim is pinned to 0.25.0: with 0.26
// componentize-js 0.22 could not read the WIT directory.

import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { componentize } from '@bytecodealliance/componentize-js';

const [source, wit, out] = process.argv.slice(2);
if (!source || !wit || !out) {
  console.error('usage: node build.mjs SOURCE.js WIT_DIR OUT.wasm');
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: 'rule-module',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
