/**
 * The parent's pending callbacks, in a forked child. The child's event loop
 * is a copy of the parent's: the timers, immediates and nextTick callbacks the
 * parent had scheduled would run in the child too, running the parent's
 * program there. A Process child runs its target only, as Python's does: it
 * drops them before it lets its event loop run.
 *
 * Node keeps these queues private; the inspector finds them once, in the
 * parent (the variables of `clearTimeout`'s and `process.nextTick`'s module),
 * and the child clears them with `clearTimeout()`/`clearImmediate()`. Where
 * that fails (another Node, no inspector) nothing is dropped, as with
 * `os.fork()`. The parent's open sockets and servers stay open in the child.
 * @internal
 */

import { executionAsyncResource } from 'async_hooks';

/** An entry of Node's linked lists of timers and immediates. */
interface Linked {
  _idleNext: Linked | null;
}

/** An Immediate, as Node's loop over them (`processImmediate`) reads it. */
interface ImmediateEntry extends Linked {
  _idleNext: ImmediateEntry | null;
  _idlePrev: ImmediateEntry | null;
  _onImmediate: (() => void) | null;
  _argv: unknown[] | undefined;
  _destroyed: boolean;
}

interface NodeQueues {
  /** `{ [duration]: TimersList }`, each a circular list whose head is the list itself. */
  timerLists: Record<string, Linked>;
  immediates: { head: Linked | null };
  ticks: { shift(): unknown; isEmpty(): boolean };
  /** Node's counters of immediates: `[count, refCount, hasOutstanding]`. */
  immediateInfo: Uint32Array;
}

/** The fields of `immediateInfo` (Node's `ImmediateInfo::Fields`). */
const IMMEDIATE_COUNT = 0;
const HAS_OUTSTANDING = 2;

/** What the parent had pending when the child was forked. */
export interface ParentCallbacks {
  timers: Linked[];
  immediates: Linked[];
  /** Whether nextTick callbacks were pending. */
  ticks: boolean;
  /** The immediate whose callback forked, when the fork came from one (see leaveImmediateBatch()). */
  runningImmediate: ImmediateEntry | null;
}

const KEY = 'node-multiprocessing.queues';
let queues: NodeQueues | null | undefined;

/**
 * In the parent, before its first fork: finds Node's queues (a few ms, once).
 * Inherited by every child forked later.
 */
export function findNodeQueues(): void {
  if (queues !== undefined) return;
  try {
    lookUp();
    queues = (clearTimeout as unknown as Record<symbol, NodeQueues | undefined>)[Symbol.for(KEY)] ?? null;
    if (queues === null) throw new Error('not stored');
  } catch (error) {
    queues = null;
    process.emitWarning(
      `node-multiprocessing on Node ${process.version} goes without dropping the parent's pending callbacks in a forked ` +
        `Process child (Node's timer, immediate and nextTick queues were not found: ${(error as Error).message})`,
      { code: 'MP_NODE_INTERNALS' },
    );
  }
}

type Post = <T>(method: string, params: object) => T;
interface Property {
  name: string;
  value?: { objectId?: string; description?: string };
}

interface Connection {
  dispatch(message: string): void;
  disconnect(): void;
}
type ConnectionClass = new (onMessage: (message: string) => void) => Connection;

/** What the inspector answered to the last message. */
interface Answer {
  result?: unknown;
  error?: { message: string };
}

/**
 * An inspector session on Node's own binding, as `inspector.Session` makes
 * one: the `inspector` module would bring worker_threads along, 0.4 MB of
 * heap that every later fork copies. Answers come back synchronously.
 */
function connect(): { post: Post; disconnect(): void } {
  const quiet = process.noDeprecation;
  process.noDeprecation = true; // DEP0111 is about process.binding() in general
  let Connection: ConnectionClass;
  try {
    Connection = (process as unknown as { binding(name: string): { Connection: ConnectionClass } }).binding('inspector').Connection;
  } finally {
    process.noDeprecation = quiet;
  }
  const reply: { answer: Answer | null } = { answer: null };
  const connection = new Connection((message) => {
    const parsed = JSON.parse(message) as Answer & { id?: number };
    if (parsed.id !== undefined) reply.answer = parsed;
  });
  let id = 0;
  const post: Post = (method, params) => {
    reply.answer = null;
    connection.dispatch(JSON.stringify({ id: ++id, method, params }));
    const answer = reply.answer as Answer | null;
    if (answer === null) throw new Error(`${method}: no answer`);
    if (answer.error !== undefined) throw new Error(`${method}: ${answer.error.message}`);
    return answer.result as never;
  };
  return { post, disconnect: () => connection.disconnect() };
}

/** Stores the queues on `clearTimeout` (the same function in every context, a test runner's sandbox too). */
function lookUp(): void {
  const { post, disconnect } = connect();
  try {
    const clearTimeoutId = evaluate(post, 'clearTimeout');
    const timers = closureVariables(post, clearTimeoutId, ['timerListMap', 'immediateQueue', 'immediateInfo']);
    const ticks = closureVariables(post, evaluate(post, 'process.nextTick'), ['queue']);
    post('Runtime.callFunctionOn', {
      objectId: clearTimeoutId,
      functionDeclaration:
        'function (key, timerLists, immediates, ticks, immediateInfo) { this[Symbol.for(key)] = { timerLists, immediates, ticks, immediateInfo }; }',
      arguments: [
        { value: KEY },
        { objectId: timers.timerListMap },
        { objectId: timers.immediateQueue },
        { objectId: ticks.queue },
        { objectId: timers.immediateInfo },
      ],
    });
  } finally {
    disconnect();
  }
}

function evaluate(post: Post, expression: string): string {
  const { result } = post<{ result: { objectId?: string } }>('Runtime.evaluate', { expression });
  if (result.objectId === undefined) throw new Error(`${expression}: not found`);
  return result.objectId;
}

/** The objects `names` of the closure of the function `functionId`. */
function closureVariables(post: Post, functionId: string, names: string[]): Record<string, string> {
  const own = post<{ internalProperties?: Property[] }>('Runtime.getProperties', { objectId: functionId, ownProperties: true });
  const scopes = own.internalProperties?.find((p) => p.name === '[[Scopes]]')?.value?.objectId;
  if (scopes === undefined) throw new Error('no scopes');
  for (const scope of post<{ result: Property[] }>('Runtime.getProperties', { objectId: scopes, ownProperties: true }).result) {
    if (scope.value?.objectId === undefined || !/^\d+$/.test(scope.name)) continue;
    const variables = post<{ result: Property[] }>('Runtime.getProperties', { objectId: scope.value.objectId, ownProperties: true });
    const found: Record<string, string> = {};
    for (const variable of variables.result) {
      if (names.includes(variable.name) && variable.value?.objectId !== undefined) found[variable.name] = variable.value.objectId;
    }
    if (names.every((name) => name in found)) return found;
  }
  throw new Error(`${names.join(', ')}: not found`);
}

// --- in the child -------------------------------------------------------------------

/**
 * In the parent, just before a fork: its pending timers and immediates, which
 * the child forgets if it lets its event loop run (a forked child pays for
 * each page it writes: the parent does this work). `null` when there are none.
 */
export function parentCallbacks(): ParentCallbacks | null {
  if (!queues) return null;
  const timers: Linked[] = [];
  for (const list of Object.values(queues.timerLists)) {
    for (let timer = list._idleNext; timer !== null && timer !== list; timer = timer._idleNext) timers.push(timer);
  }
  const immediates: Linked[] = [];
  for (let immediate = queues.immediates.head; immediate !== null; immediate = immediate._idleNext) immediates.push(immediate);
  const ticks = !queues.ticks.isEmpty();
  const runningImmediate = immediateRunning(queues);
  return timers.length > 0 || immediates.length > 0 || ticks || runningImmediate !== null ? { timers, immediates, ticks, runningImmediate } : null;
}

/** The immediate whose callback runs now (this code is called from it), or `null`. */
function immediateRunning(nodeQueues: NodeQueues): ImmediateEntry | null {
  if (nodeQueues.immediateInfo[HAS_OUTSTANDING] === 0) return null; // not inside Node's loop over immediates
  const resource = executionAsyncResource() as Partial<ImmediateEntry>;
  // Node marks an immediate destroyed just before it calls its callback.
  return resource._destroyed === true && '_onImmediate' in resource && '_idlePrev' in resource ? (resource as ImmediateEntry) : null;
}

/**
 * In the child, before anything of its own is queued (its target's
 * `net.connect()`, say, queues a nextTick): the parent's nextTick callbacks
 * never run. Node's queue of them keeps no mark of whose they are, so it is
 * emptied before the child's own can be in it.
 */
export function forgetParentTicks(callbacks: ParentCallbacks | null): void {
  if (callbacks !== null && callbacks.ticks && queues) while (queues.ticks.shift() != null);
}

/**
 * In the child, before its event loop runs: the parent's timers and
 * immediates never run (those of the target, queued after the fork, stay).
 */
export function forgetParentCallbacks(callbacks: ParentCallbacks | null): void {
  if (callbacks === null || !queues) return;
  for (const timer of callbacks.timers) clearTimeout(timer as unknown as NodeJS.Timeout);
  for (const immediate of callbacks.immediates) clearImmediate(immediate as unknown as NodeJS.Immediate);
  if (callbacks.runningImmediate !== null) leaveImmediateBatch(queues, callbacks.runningImmediate);
}

function doNothing(): void {}

/**
 * Forked inside `running`'s callback, the child leaves Node's loop over a
 * batch of immediates (`processImmediate`) mid-way: the unwinding skips the
 * loop's own bookkeeping, and Node calls the loop again at once to finish the
 * batch. Left so, it would run the parent's immediates queued after `running`
 * (they are in no queue the child clears), or, when `running` was not the
 * first of its batch, restart at `running` itself, which it cannot step over
 * (a TypeError, raised again and again: the child's loop never turns). So:
 * the rest of the batch is cleared (its counts too, or the child's loop would
 * never sleep), and a `running` the loop restarts at runs once more as a no-op.
 */
function leaveImmediateBatch(nodeQueues: NodeQueues, running: ImmediateEntry): void {
  for (let next = running._idleNext; next !== null; ) {
    const after = next._idleNext;
    clearImmediate(next as unknown as NodeJS.Immediate);
    next = after;
  }
  running._idleNext = null;
  // Node restarts at `running` when it was not the first of its batch (then it has a predecessor).
  if (running._idlePrev === null) return;
  running._destroyed = false;
  running._onImmediate = doNothing;
  running._argv = undefined;
  nodeQueues.immediateInfo[IMMEDIATE_COUNT]++; // counted down again when it runs
}
