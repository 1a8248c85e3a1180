// Runs a velonotify rule module in Node.js, transpiled to JavaScript by jco,
// over events as `velonotify replay` reads them, and prints one JSON line per
// action. The portability test (tests/e2e/portability.rs) compares them with
// what velonotify's own host produced for the same inputs.
//
// Usage: node run.mjs <transpiled module .js> <answers.json> <events.jsonl>
// answers.json: {"params": [[name, text], ...], "org_id": "root",
//                "server": {...}, "world": {"clients": {...}}}

import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setNowUs, useAnswers } from './host.js';

const [componentJs, answersPath, eventsPath] = process.argv.slice(2);
const answers = JSON.parse(readFileSync(answersPath, 'utf8'));
useAnswers(answers);
const rule = await import(pathToFileURL(resolve(componentJs)).href);

// Byte strings as base64, 64-bit integers as decimal text, records with
// velonotify's snake_case names.
function plain(value) {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [key, v] of Object.entries(value)) {
      if (v !== undefined) out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = plain(v);
    }
    return out;
  }
  return value;
}

const setup = rule.configure(answers.params);
const name = basename(eventsPath);
const lines = readFileSync(eventsPath, 'utf8').split('\n');
lines.forEach((text, index) => {
  if (text.trim() === '') return;
  const row = JSON.parse(text);
  if (!setup.queues.includes(row._Source)) return;
  const event = { id: `${name}:${index + 1}`, queue: row._Source, row: text, orgId: answers.org_id };
  // As in a replay, "now" is the row's _ts.
  setNowUs(BigInt(Math.round(row._ts * 1e6)));
  for (const action of rule.handle(event)) {
    console.log(JSON.stringify({ event: event.id, kind: action.tag, ...plain(action.val) }));
  }
});
