/**
 * What a child of the spawn and forkserver start methods is told, and how it
 * makes its process object from that: as CPython's `spawn.py` (preparation
 * data, then the pickled process object).
 *
 * The process object crosses as its state (name, `Process-N:M` identity,
 * daemon flag, parent), its class and target by module reference
 * (reference.ts), its arguments and own fields through `dumps` (reduction.ts),
 * so that Locks, Values and the like arrive usable.
 *
 * The parent's main script is not run again in the child unless the target
 * (or the Process subclass) is exported by it: the child then loads it as a
 * module, where `require.main === module` is false (as Python's child imports
 * the main module as `__mp_main__`, where `__name__ != '__main__'`), so code
 * guarded by it does not run.
 * @internal
 */
import * as fs from 'fs';

import { getContext, Process } from './context';
import { setActualStartMethod } from './popen/method';
import type { StartMethod } from './popen/popen';
import { BaseProcess, currentProcess, ProcessState } from './process';
import { collectDescriptors, DescriptorKey, dumps, inheritDescriptor, loads } from './reduction';
import { Reference, referenceOf, resolveCommonJs, resolveReference } from './reference';

type AnyFunction = (...args: never[]) => unknown;
type ProcessClass = abstract new (...args: never[]) => BaseProcess;

/** Everything a spawned or forkserver child needs to run a Process. */
export interface ChildSpec {
  state: ProcessState;
  /** A subclass of the user's that overrides `run()`, by reference; `null`: the library's class. */
  processClass: Reference | null;
  /** The start method of the context whose Process class it is; `null`: the default `Process`. */
  contextMethod: StartMethod | null;
  target: Reference | null;
  /** `dumps(args)`; `null` for no arguments (the child then need not load v8). */
  args: Uint8Array | null;
  /** `dumps()` of the process object's own fields (a subclass's); `null` for none. */
  fields: Uint8Array | null;
  /** The parent's start method when it was set (the child's default then), as Python's prepare(). */
  defaultMethod: StartMethod | null;
  /** The parent's command-line arguments after the script, for `process.argv`. */
  argv: string[];
  /** Descriptors of the parent's that the arguments hold (Connections), passed along with the launch. */
  fds: DescriptorKey[];
}

/** What a spec names, loaded in this process. */
export interface ResolvedSpec {
  processClass: ProcessClass;
  target: AnyFunction | null;
}

/** The nearest class of the library's (the default Process, a context's) among `type` and its ancestors. */
function libraryAncestor(type: ProcessClass): [ProcessClass, StartMethod | null] {
  for (let proto: unknown = type; typeof proto === 'function'; proto = Object.getPrototypeOf(proto)) {
    if (Object.prototype.hasOwnProperty.call(proto, '_startMethod')) {
      return [proto as ProcessClass, (proto as typeof Process)._startMethod];
    }
  }
  return [Process, null];
}

/**
 * Set while this process loads the modules a spec names (the parent's main
 * module among them), as Python's `_inheriting`: a process started from
 * there would be started by each child anew, without end.
 */
let bootstrapping = false;

/** Runs `load` as a child's bootstrapping phase (see {@link bootstrapping}), until its Promise settles. */
function whileBootstrapping<T>(load: () => T): T {
  const outer = bootstrapping;
  bootstrapping = true;
  let result: T;
  try {
    result = load();
  } catch (error) {
    bootstrapping = outer;
    throw error;
  }
  if (!(result instanceof Promise)) {
    bootstrapping = outer;
    return result;
  }
  return result.finally(() => {
    bootstrapping = outer;
  }) as T;
}

/** The error of start() in a child still loading its parent's modules, as Python's RuntimeError. */
function bootstrappingError(method: StartMethod): Error {
  const error = new Error(
    'An attempt has been made to start a new process before the current process has finished its ' +
      `bootstrapping phase. This child of the '${method}' start method is loading its parent's main module ` +
      '(or the module of its target), whose top-level code starts a process: every child would start ' +
      'another. Guard the top-level code of the main module:\n' +
      '    if (require.main === module) { ... }   // CommonJS, TypeScript compiled to CommonJS\n' +
      '    if (import.meta.main) { ... }          // ES modules, Node >= 24.2\n' +
      '    if (import.meta.url === pathToFileURL(process.argv[1]).href) { ... }   // ES modules, any Node\n' +
      "or export the target from a module of its own; the 'fork' start method does not load the main module again.",
  );
  return Object.assign(error, { name: 'RuntimeError', code: 'ERR_MP_BOOTSTRAPPING' });
}

/** Whether `error` is the error of a start() in a child's bootstrapping phase. */
export function isBootstrappingError(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_MP_BOOTSTRAPPING';
}

/**
 * The spec of `process` for a child of start method `method`. Throws (in the
 * parent, from `start()`) when the target or the class cannot be reached by
 * reference or an argument cannot be sent, and in a child still loading its
 * parent's modules (an unguarded main module).
 */
export function childSpec(process_: BaseProcess, method: StartMethod, defaultMethod: StartMethod | null): ChildSpec {
  if (bootstrapping) throw bootstrappingError(method);
  const type = process_.constructor as ProcessClass;
  const [ancestor, contextMethod] = libraryAncestor(type);
  // A subclass that only adds fields can be made as its library ancestor; one
  // that overrides run() must be loadable itself.
  const ownRun = (type.prototype as BaseProcess).run !== (ancestor.prototype as BaseProcess).run;
  const { target, args } = process_._call;
  const [[dumpedArgs, fields], fds] = collectDescriptors(() => [
    args.length === 0 ? null : dumps(args, 'args'),
    Object.keys(process_).length === 0 ? null : dumps({ ...process_ }, 'Process field'),
  ]);
  return {
    state: process_._state,
    processClass: ownRun ? referenceOf(type as unknown as AnyFunction, `Process subclass ${type.name}`, method) : null,
    contextMethod,
    target: target === null ? null : referenceOf(target, 'target', method),
    args: dumpedArgs,
    fields,
    defaultMethod,
    argv: process.argv.slice(2),
    fds,
  };
}

/** The first descriptor number of those a spawned child is given (after the spec's pipe, 3). */
export const FIRST_PASSED_FD = 4;

/** In a launched child: `localFds[i]` is the copy of `spec.fds[i]` it was given. */
export function inheritDescriptors(spec: ChildSpec, localFds: number[]): void {
  spec.fds.forEach((key, i) => inheritDescriptor(key, localFds[i]));
}

/** Loads what `spec` names (a module the target lives in runs its top-level code now). */
export function resolveSpec(spec: ChildSpec): Promise<ResolvedSpec> {
  return whileBootstrapping(() => resolveSpecNow(spec));
}

async function resolveSpecNow(spec: ChildSpec): Promise<ResolvedSpec> {
  const processClass =
    spec.processClass === null
      ? spec.contextMethod === null
        ? Process
        : getContext(spec.contextMethod).Process
      : ((await resolveReference(spec.processClass, 'Process subclass')) as unknown as ProcessClass);
  if (!(processClass.prototype instanceof BaseProcess)) throw new TypeError(`${processClass.name} is not a Process class`);
  const target = spec.target === null ? null : await resolveReference(spec.target, 'target');
  return { processClass, target };
}

/** {@link resolveSpec} without waiting: `undefined` when an ES module must be imported first. */
export function resolveSpecSync(spec: ChildSpec): ResolvedSpec | undefined {
  const { processClass: classReference, target } = spec;
  if (classReference?.kind === 'module' || target?.kind === 'module') return undefined;
  return whileBootstrapping(() => {
    const processClass =
      classReference === null
        ? spec.contextMethod === null
          ? Process
          : getContext(spec.contextMethod).Process
        : (resolveCommonJs(classReference, 'Process subclass') as unknown as ProcessClass);
    return { processClass, target: target === null ? null : resolveCommonJs(target, 'target') };
  });
}

/**
 * In the child: takes its name (a module loaded to find the target already
 * sees it), the parent's arguments and start method, as Python's
 * `spawn.prepare()`.
 */
export function prepare(spec: ChildSpec): void {
  currentProcess().name = spec.state.name;
  process.argv.splice(2, Infinity, ...spec.argv);
  // The parent checked it: the child takes it as it is (as Python's prepare()).
  if (spec.defaultMethod !== null) setActualStartMethod(spec.defaultMethod);
}

/** In the child: the process object of `spec`, with its arguments and fields rebuilt here. */
export function restoreProcess(spec: ChildSpec, resolved: ResolvedSpec): BaseProcess {
  const args = spec.args === null ? [] : (loads(spec.args) as unknown[]);
  const fields = spec.fields === null ? {} : (loads(spec.fields) as Record<string, unknown>);
  return BaseProcess._restore(resolved.processClass, spec.state, fields, {
    target: resolved.target as ((...args: unknown[]) => unknown) | null,
    args,
  });
}

/**
 * The bytes a spec travels as: JSON, the dumped arguments and fields in
 * base64 (JSON needs nothing loaded in the child; v8 is loaded only to
 * rebuild arguments).
 */
export function encodeSpec(spec: ChildSpec): Buffer {
  const base64 = (bytes: Uint8Array | null): string | null => bytes && Buffer.from(bytes).toString('base64');
  return Buffer.from(JSON.stringify({ ...spec, args: base64(spec.args), fields: base64(spec.fields) }));
}

export function decodeSpec(bytes: Uint8Array): ChildSpec {
  const json = JSON.parse(Buffer.from(bytes).toString('utf8')) as Omit<ChildSpec, 'args' | 'fields'> & {
    args: string | null;
    fields: string | null;
  };
  const binary = (text: string | null): Buffer | null => (text === null ? null : Buffer.from(text, 'base64'));
  return { ...json, args: binary(json.args), fields: binary(json.fields) };
}

/** Reads a whole spec from `fd` (until end of file) and closes it. */
export function readSpec(fd: number): ChildSpec {
  const chunks: Buffer[] = [];
  const chunk = Buffer.allocUnsafe(64 * 1024);
  try {
    for (;;) {
      let read: number;
      try {
        read = fs.readSync(fd, chunk, 0, chunk.length, null);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EINTR') continue;
        throw error;
      }
      if (read === 0) break;
      chunks.push(Buffer.from(chunk.subarray(0, read)));
    }
  } finally {
    fs.closeSync(fd);
  }
  return decodeSpec(Buffer.concat(chunks));
}
