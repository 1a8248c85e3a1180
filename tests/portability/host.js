// The `velociraptor:notify/host` interface for a rule module running in
// Node.js (transpiled by jco): answers from a JSON file written by the
// portability test, the same answers velonotify's replay gives from its
// world file. Lookups the test does not expect fail loudly.

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

export function nowUs() {
  return now;
}

export function log(level, message) {
  process.stderr.write(`module log ${level}: ${message}\n`);
}

export function server() {
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

export function clientInfo(clientId) {
  const found = client(clientId);
  if (found === undefined) return undefined;
  const { metadata, ...info } = found;
  return JSON.stringify(info);
}

export function clientMetadata(clientId) {
  const metadata = client(clientId)?.metadata;
  return metadata === undefined ? undefined : JSON.stringify(metadata);
}

function unexpected(name) {
  return () => {
    throw new Error(`the portability test does not answer ${name}()`);
  };
}

export const clients = unexpected('clients');
export const flow = unexpected('flow');
export const flowResults = unexpected('flow-results');
export const flowUploads = unexpected('flow-uploads');
export const hunt = unexpected('hunt');
export const artifact = unexpected('artifact');
export const eventTables = unexpected('event-tables');
export const users = unexpected('users');
export const monitoringLogs = unexpected('monitoring-logs');
export const auditLog = unexpected('audit-log');
export const stateGet = unexpected('state-get');
export const statePut = unexpected('state-put');
