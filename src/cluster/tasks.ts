/**
 * The tasks a node can run: functions exported by the modules it loaded
 * (`--require`), found again from the module reference a client sent, as a
 * spawn child finds its target. A client's path need not exist on the node:
 * a reference is matched to a loaded module by path, then by file name.
 * @internal
 */
import { existsSync } from 'fs';
import { hostname } from 'os';
import { basename, resolve } from 'path';
import { fileURLToPath, pathToFileURL } from 'url';

import { importModule, Reference, resolveReference } from '../reference';

type Task = (...args: never[]) => unknown;

function fileOf(reference: Reference): string {
  if (reference.kind === 'commonjs') return reference.filename;
  return reference.url.startsWith('file:') ? fileURLToPath(reference.url) : reference.url;
}

function withFile(reference: Reference, file: string): Reference {
  return reference.kind === 'commonjs' ? { ...reference, filename: file } : { ...reference, url: pathToFileURL(file).href };
}

function nameOf(reference: Reference): string {
  return reference.kind === 'commonjs' ? (reference.key ?? 'module.exports') : reference.name;
}

/** A short name of a task for job names and messages: `tasks.js#square`. */
export function taskLabel(reference: Reference): string {
  return `${basename(fileOf(reference))}#${nameOf(reference)}`;
}

export class TaskModules {
  private readonly loaded: string[] = [];
  private readonly tasks = new Map<string, Promise<Task>>();

  /** Loads a module given by path (relative to the working directory): require(), or import() for an ES module. */
  async load(path: string): Promise<void> {
    const file = resolve(path);
    if (!existsSync(file)) throw new Error(`--require ${path}: no such file (${file})`);
    try {
      require(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') throw error;
      await importModule(pathToFileURL(file).href);
    }
    this.loaded.push(file);
  }

  /** The function `reference` names on this node. */
  resolve(reference: Reference): Promise<Task> {
    const key = `${fileOf(reference)}#${nameOf(reference)}`;
    let task = this.tasks.get(key);
    if (task === undefined) {
      task = resolveReference(this.locate(reference), 'task');
      this.tasks.set(key, task);
      task.catch(() => this.tasks.delete(key)); // a module fixed and reloaded later may have it
    }
    return task;
  }

  /** `reference` pointing at this node's copy of its module (an Error saying what to load when there is none). */
  locate(reference: Reference): Reference {
    const file = fileOf(reference);
    if (this.loaded.includes(file)) return reference;
    const sameName = this.loaded.filter((loaded) => basename(loaded) === basename(file));
    if (sameName.length === 1) return withFile(reference, sameName[0]);
    if (existsSync(file)) return reference;
    throw new Error(
      `task ${nameOf(reference)} of ${file}: node ${hostname()} (pid ${process.pid}) has no such module` +
        (sameName.length > 1 ? ` and several of that file name (${sameName.join(', ')})` : '') +
        `; start the node with --require <that module's path on this machine>` +
        ` (it loaded: ${this.loaded.length > 0 ? this.loaded.join(', ') : 'nothing'})`,
    );
  }
}
