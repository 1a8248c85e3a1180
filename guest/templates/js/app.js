// __MODULE_NAME__: a velonotify rule module in JavaScript.
//
// It alerts when a file whose name matches FileRegex is accessed. Change
// `handle` to your rule; `velonotify test` checks it against the rows in
// __STEM__.selftest.jsonl (see README.md).

import { alert, defineRule, interest, matches, param } from './velonotify.js';

export const { describe, configure, handle, tick } = defineRule({
  name: '__MODULE_NAME__',
  version: '0.1.0',
  description: 'Alerts when a file whose name matches FileRegex is accessed.',
  params: [
    param.string('Queue', 'Linux.Detection.Honeyfiles', 'The event queue to watch.'),
    param.regex('FileRegex', 'passw|secret', 'Names of the files to alert on (the FileName column).'),
    param.int('Dedup', 300, 'Seconds during which the same alert is raised once.'),
  ],
  queues: (p) => [p.Queue],

  interests() {
    // The host tests FileName itself and spares the rule the other rows.
    return [interest(this.p.Queue, { FileName: matches(this.p.FileRegex.source) })];
  },

  handle(row) {
    const fileName = String(row.FileName ?? '');
    if (!this.p.FileRegex.test(fileName)) return [];
    const name = `Honey file "${fileName}" accessed`;
    return [alert(name, row, { dedupSeconds: this.p.Dedup, clientId: row.ClientId, artifact: this.p.Queue })];
  },
});
