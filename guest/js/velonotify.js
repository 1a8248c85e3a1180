// Write velonotify rule modules in JavaScript.
//
// A rule is an object: its name, its parameters (declared as the
// Velociraptor artifacts declare theirs), its queues and `handle(row,
// event)`, which turns a row (an object) into actions. `defineRule(rule)`
// gives the four exports of the `rule-module` world (wit/world.wit):
//
//   import { defineRule, param, alert } from '../../velonotify.js';
//   export const { describe, configure, handle, tick } = defineRule({
//     name: 'Custom.Honeyfiles', version: '0.1.0', description: '...',
//     params: [param.regex('FileRegex', 'passw|secret', 'Files that are bait.')],
//     queues: ['Linux.Detection.Honeyfiles'],
//     handle(row) { return this.p.FileRegex.test(row.FileName ?? '') ? [alert('Honey file', row)] : []; },
//   });
//
// componentize-js makes it a component (guest/js/build.mjs).

import { log as writeLog, enabled } from 'velociraptor:notify/log@0.3.3';
import * as host from 'velociraptor:notify/lookups@0.3.3';
import { get, put } from 'velociraptor:notify/state@0.3.3';
import { nowUs } from 'velociraptor:notify/clock@0.3.3';
import { silenceSimilar } from 'velociraptor:notify/links@0.3.3';

// --- Parameters, parsed as the Rust modules parse them (wit/types.wit) ---

class BadConfig extends Error {
  constructor(param, message) {
    super(`${param}: ${message}`);
    this.param = param;
    this.detail = message;
  }
}

/** Raise from `handle` for a row the rule cannot use: the host skips it. */
export class BadEvent extends Error {}

class LookupFailed extends Error {}

const quoted = (text) => JSON.stringify(text);

function parseBool(text) {
  const word = text.trim().toUpperCase();
  if (['Y', 'YES', 'TRUE', 'OK'].includes(word)) return true;
  if (['N', 'NO', 'FALSE', ''].includes(word)) return false;
  throw new Error(`expected a boolean (Y, N, TRUE, FALSE, YES, NO), got ${quoted(text)}`);
}

// The range of an int parameter, as the Rust modules' default.
const INT_RANGE = [-1_000_000_000, 1_000_000_000];

function parseInt64(text) {
  const trimmed = text.trim();
  if (trimmed === '') return 0;
  if (!/^[+-]?[0-9]+$/.test(trimmed)) throw new Error(`expected an integer, got ${quoted(text)}`);
  const value = Number(trimmed);
  const [low, high] = INT_RANGE;
  if (!(value >= low && value <= high)) throw new Error(`${trimmed} is out of range (${low} to ${high})`);
  return value;
}

function parseRegex(text) {
  // VQL's `=~`: case-insensitive, unanchored; these match everything.
  const pattern = ['', '.', '.*'].includes(text) ? '' : text;
  try {
    return new RegExp(pattern, 'i');
  } catch (e) {
    throw new Error(`the regex does not compile: ${e.message}`);
  }
}

function parseJsonArray(text) {
  const value = text.trim() ? JSON.parse(text) : [];
  if (!Array.isArray(value)) throw new Error(`expected a JSON array, got ${quoted(text)}`);
  return value;
}

// A CSV table as the Rust modules read it: names trimmed, spaces after a
// comma dropped, blank rows skipped, a missing cell empty. (Quoted cells
// with commas are not read here: write such a table as JSON.)
function parseCsv(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) return parseJsonArray(trimmed);
  if (trimmed === '') return [];
  const [header, ...lines] = trimmed
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '')
    .map((line) => line.split(',').map((cell) => cell.trimStart()));
  return lines.map((cells) => Object.fromEntries(header.map((h, i) => [h.trim(), cells[i] ?? ''])));
}

const PARSERS = {
  bool: parseBool,
  int: parseInt64,
  string: (text) => text,
  regex: parseRegex,
  csv: parseCsv,
  'json-array': parseJsonArray,
};

function declare(kind) {
  return (name, defaultValue, description, choices = []) => ({
    name,
    kind,
    default: String(defaultValue),
    description,
    choices,
  });
}

/** Parameter declarations: `param.int('Dedup', 300, 'Seconds ...')`. */
export const param = {
  bool: declare('bool'),
  int: declare('int'),
  string: declare('string'),
  regex: declare('regex'),
  csv: declare('csv'),
  jsonArray: declare('json-array'),
  choices: declare('choices'),
};

function parseParams(declared, given) {
  const known = new Map(declared.map((p) => [p.name, p]));
  const texts = new Map(declared.map((p) => [p.name, p.default]));
  for (const [name, text] of given) {
    if (!known.has(name)) {
      const close = declared.find((p) => p.name.toLowerCase() === name.toLowerCase());
      throw new BadConfig(
        name,
        close
          ? `unknown parameter (names are case-sensitive: did you mean ${close.name}?)`
          : `unknown parameter (this module accepts: ${declared.map((p) => p.name).join(', ')})`,
      );
    }
    texts.set(name, text);
  }
  const values = {};
  for (const [name, text] of texts) {
    const spec = known.get(name);
    try {
      if (spec.kind === 'choices' && !spec.choices.includes(text)) {
        throw new Error(`${quoted(text)} is not one of ${spec.choices.join(', ')}`);
      }
      values[name] = (PARSERS[spec.kind] ?? PARSERS.string)(text);
    } catch (e) {
      throw new BadConfig(name, e.message);
    }
  }
  return values;
}

// --- What a rule can ask for ---

/** An alert, as VQL's `alert()` raises it; `context` is the event data. */
export function alert(name, context, { dedupSeconds, clientId, artifact, artifactType, flowId } = {}) {
  return {
    tag: 'alert',
    val: {
      name: String(name),
      dedupSeconds: dedupSeconds === undefined ? undefined : BigInt(dedupSeconds),
      eventData: JSON.stringify(context),
      clientId,
      artifact,
      artifactType,
      flowId,
    },
  };
}

/** A POST of `body` (text, bytes, or anything JSON) to `url`. */
export function webhook(url, body, headers = []) {
  const bytes =
    body instanceof Uint8Array
      ? body
      : new TextEncoder().encode(typeof body === 'string' ? body : JSON.stringify(body));
  return { tag: 'webhook', val: { url, headers, body: bytes } };
}

/** A message in a Velociraptor user's notifications. */
export function userMessage(user, message) {
  return { tag: 'user-message', val: { user, message } };
}

// --- What the host offers ---

export const log = {
  debug: (message) => writeLog('debug', String(message)),
  info: (message) => writeLog('info', String(message)),
  warn: (message) => writeLog('warn', String(message)),
  error: (message) => writeLog('error', String(message)),
  /** Whether debug lines are kept (a replay explains; `run` does not). */
  debugEnabled: () => enabled('debug'),
};

/** The host's clock (virtual during a replay), in microseconds. */
export const now = () => Number(nowUs());

/**
 * The signed address of velonotify's page that silences notifications like
 * the one this call makes ("Silence similar for 2 h"), or null when the host
 * serves none (no `[server] velonotify_url`).
 */
export const silenceLink = () => silenceSimilar() ?? null;

/** The module's state in the host: it survives restarts and swaps. */
export const state = {
  getJson(key, fallback = undefined) {
    const raw = get(key);
    return raw === undefined ? fallback : JSON.parse(new TextDecoder().decode(raw));
  },
  putJson(key, value, ttlSeconds = 0) {
    put(key, new TextEncoder().encode(JSON.stringify(value)), ttlSeconds);
  },
};

function answer(call) {
  try {
    const text = call();
    return text === undefined ? undefined : JSON.parse(text);
  } catch (e) {
    throw new LookupFailed(String(e?.payload?.val ?? e?.message ?? e));
  }
}

/** Velociraptor's answers as objects (undefined when unknown). */
export const lookups = {
  clientInfo: (clientId) => answer(() => host.clientInfo(clientId)),
  clientMetadata: (clientId) => answer(() => host.clientMetadata(clientId)),
  flow: (clientId, flowId) => answer(() => host.flow(clientId, flowId)),
  hunt: (huntId) => answer(() => host.hunt(huntId)),
  artifact: (name) => answer(() => host.artifact(name)),
  users: () => host.users().map((u) => JSON.parse(u)),
};

// --- Interests: the rows a rule may act on, tested by the host ---

export const matches = (pattern) => ({ tag: 'matches', val: pattern });
export const notMatches = (pattern) => ({ tag: 'not-matches', val: pattern });
export const oneOf = (...texts) => ({ tag: 'one-of', val: texts });
export function interest(queue, columns) {
  return { queue, columns: Object.entries(columns).map(([column, test]) => ({ column, test })) };
}

// --- The rule and the world around it ---

function failure(error) {
  if (error instanceof BadConfig) return { tag: 'bad-config', val: { param: error.param, message: error.detail } };
  if (error instanceof BadEvent) return { tag: 'bad-event', val: error.message };
  if (error instanceof LookupFailed) return { tag: 'lookup', val: error.message };
  return { tag: 'internal', val: `${error?.name ?? 'Error'}: ${error?.message ?? error}`.slice(0, 2000) };
}

/** The exports of the world (`describe`, `configure`, `handle`, `tick`). */
export function defineRule(rule) {
  const declared = rule.params ?? [];
  let configured;
  return {
    describe: () => ({
      name: rule.name,
      version: rule.version ?? '0.1.0',
      description: rule.description ?? '',
      params: declared,
    }),
    configure(given) {
      try {
        configured = Object.create(rule);
        configured.p = parseParams(declared, given);
        configured.setup?.();
        const queues = typeof rule.queues === 'function' ? configured.queues(configured.p) : rule.queues;
        return {
          queues,
          tickSeconds: rule.tickSeconds,
          interests: configured.interests?.() ?? [],
        };
      } catch (e) {
        throw failure(e);
      }
    },
    handle(event) {
      try {
        let row;
        try {
          row = JSON.parse(event.row);
        } catch (e) {
          throw new BadEvent(`the row is not JSON: ${e.message}`);
        }
        if (row === null || typeof row !== 'object' || Array.isArray(row)) {
          throw new BadEvent(`the row is not a JSON object: ${event.row.slice(0, 100)}`);
        }
        return configured.handle(row, event) ?? [];
      } catch (e) {
        throw failure(e);
      }
    },
    tick() {
      try {
        return configured.tick?.() ?? [];
      } catch (e) {
        throw failure(e);
      }
    },
  };
}
