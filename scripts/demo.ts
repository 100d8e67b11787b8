/**
 * `npm run demo`: runs every demonstration of scripts/demos/ in name order,
 * each as a program of its own, with a header before each.
 * `npm run demo -- zombie` runs only those whose name contains "zombie".
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const dir = path.join(__dirname, 'demos');
const filter = process.argv[2];
const files = fs
  .readdirSync(dir)
  .filter((file) => file.endsWith('.js') && (!filter || file.includes(filter)))
  .sort();

let failed = 0;
for (const file of files) {
  console.log(`\n=== ${file.replace(/\.js$/, '')} ${'='.repeat(Math.max(0, 60 - file.length))}`);
  const result = spawnSync(process.execPath, [path.join(dir, file)], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.error(`demo ${file} failed (status ${result.status}, signal ${result.signal})`);
  }
}
process.exitCode = failed ? 1 : 0;
