// The interfaces velonotify offers a rule module (`velociraptor:notify/clock`,
// `log`, `lookups`, `state`), for a module running in Node.js (transpiled by
// jco, each interface mapped to the export of the same name here): answers
// from a JSON file written by the portability test, the same answers
// velonotify's replay gives from its world file. Lookups the test does not
// expect fail loudly.

let answers = null;
let now = 0n;

/** Sets the answers (`world.clients`, `server`) before the module runs. */
export function useAnswers(value) {
  answers = value;
}

/** Sets the clock the module sees, in microseconds. */
export function setNowUs(value) {
  now = value;
}

function nowUs() {
  return now;
}

function logLine(level, message) {
  process.stderr.write(`module log ${level}: ${message}\n`);
}

function server() {
  const s = answers.server;
  return {
    orgId: s.org_id,
    orgName: s.org_name,
    publicUrl: s.public_url ?? undefined,
    defaultSender: s.default_sender,
    maxEmailBytes: BigInt(s.max_email_bytes),
  };
}

function client(clientId) {
  return answers.world.clients?.[clientId];
}

function clientInfo(clientId) {
  const found = client(clientId);
  if (found === undefined) return undefined;
  const { metadata, ...info } = found;
  return JSON.stringify(info);
}

function clientMetadata(clientId) {
  const metadata = client(clientId)?.metadata;
  return metadata === undefined ? undefined : JSON.stringify(metadata);
}

function unexpected(name) {
  return () => {
    throw new Error(`the portability test does not answer ${name}()`);
  };
}

export const clock = { nowUs };

// No `[server] velonotify_url` here: e-mails carry no silence link.
export const links = { silenceSimilar: () => undefined };

// Debug lines are kept, as in a replay that explains.
export const log = { log: logLine, enabled: () => true };

export const lookups = {
  server,
  clientInfo,
  clientMetadata,
  clients: unexpected('clients'),
  flow: unexpected('flow'),
  flowResults: unexpected('flow-results'),
  flowUploads: unexpected('flow-uploads'),
  hunt: unexpected('hunt'),
  artifact: unexpected('artifact'),
  eventTables: unexpected('event-tables'),
  users: unexpected('users'),
  monitoringLogs: unexpected('monitoring-logs'),
  auditLog: unexpected('audit-log'),
  serverFile: unexpected('server-file'),
  runningHunts: unexpected('running-hunts'),
  activeFlows: unexpected('active-flows'),
};

export const state = {
  get: unexpected('state.get'),
  put: unexpected('state.put'),
};

// Interfaces that only hold types.
export const types = {};
export const actions = {};
