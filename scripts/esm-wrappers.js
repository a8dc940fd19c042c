// ESM entry points that re-export the CommonJS build, so `import { Dispatcher } from 'herdless'`
// and `require('herdless')` share one module instance (one addon, one worker state).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const lib = path.join(__dirname, '..', 'lib');
const entries = {
  'index.mjs': ['./index.js', ['Dispatcher', 'HerdlessError', 'ErrorCodes']],
  'worker/index.mjs': ['./index.js', ['serve', 'ready', 'workerId', 'workerSlot', 'isWorker', 'onShutdown']],
  'primary/metrics.mjs': ['./metrics.js', ['startMetricsServer', 'createRegistry']],
};
for (const [file, [target, names]] of Object.entries(entries)) {
  const body = `import cjs from '${target}';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`;
  fs.writeFileSync(path.join(lib, file), body);
}
