// The demo's honey-file detection (`honeyfile-access`, which runs the Rust
// `detect` module) written in JavaScript: the same parameters, the same
// alert. `scripts/bench` runs it beside the Rust and Python ones.

import { alert, defineRule, interest, log, lookups, matches, param } from '../../velonotify.js';

export const { describe, configure, handle, tick } = defineRule({
  name: 'Custom.Detection.Honeyfiles',
  version: '0.1.0',
  description: 'Alerts when a file whose name matches FileRegex is accessed.',
  params: [
    param.string('Queue', 'Linux.Detection.Honeyfiles', 'The event queue of file accesses.'),
    param.regex('FileRegex', 'salar|passw|secret|\\.kdbx$', 'Names of the bait files (the FileName column).'),
    param.int('Dedup', 300, 'Seconds during which the same alert is raised once.'),
    param.string('Severity', 'high', 'The Severity column of the alert.'),
  ],
  queues: (p) => [p.Queue],

  interests() {
    // The host tests FileName itself and spares the rule the rest.
    const pattern = this.p.FileRegex.source;
    return pattern === '(?:)' ? [] : [interest(this.p.Queue, { FileName: matches(pattern) })];
  },

  handle(row) {
    const fileName = String(row.FileName ?? '');
    if (!this.p.FileRegex.test(fileName)) {
      if (log.debugEnabled()) log.debug(`${fileName}: not a honey file`);
      return [];
    }
    const clientId = row.ClientId;
    const client = clientId ? lookups.clientInfo(clientId) : undefined;
    const hostname = client?.os_info?.hostname ?? '';
    const context = { ...row, Severity: this.p.Severity };
    const name = `Honeyfile "${fileName}" accessed on ${hostname}`;
    return [alert(name, context, { dedupSeconds: this.p.Dedup, clientId, artifact: this.p.Queue })];
  },
});
