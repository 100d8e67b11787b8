/**
 * `npm run bench`: runs every benchmark of scripts/bench/ (each numbered file a
 * program of its own, in name order) and prints their tables one after another.
 * `npm run bench -- fork` runs only the files whose name contains "fork".
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const dir = path.join(__dirname, 'bench');
const filter = process.argv[2];
const files = fs
  .readdirSync(dir)
  .filter((file) => /^\d+-.*\.js$/.test(file) && (!filter || file.includes(filter)))
  .sort();

console.log(`# node-multiprocessing benchmarks (Node ${process.version}, V8 ${process.versions.v8}, ${process.platform}-${process.arch})`);
console.log('Figures are medians measured in this one run, side by side; ratios are from our side.');
let failed = 0;
for (const file of files) {
  const result = spawnSync(process.execPath, [path.join(dir, file)], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    console.error(`benchmark ${file} failed (status ${result.status}, signal ${result.signal})`);
  }
}
process.exitCode = failed ? 1 : 0;
