/**
 * The fork server of the forkserver start method, as CPython's
 * `forkserver.py`: one fresh `node` per parent, started on first use, that
 * forks a child per request with the native fork. Its children start from a
 * small, clean process (not from a copy of the parent), in about a
 * millisecond once their module is loaded.
 *
 * Channels (fds of the server):
 * - 4: requests, a pipe from the parent. End of file (the parent exited,
 *   even killed) ends the server.
 * - 5: replies, a pipe to the parent, which reads them blocking: `start()`
 *   returns with the child's pid, `joinSync()` with its exit code.
 * - 3: exit reports, a socket the parent reads on its event loop:
 *   `[pid, exitCode]` for each child that ends (the parent cannot waitpid a
 *   grandchild).
 *
 * A request is `[u32 length][u8 op][body]`, little-endian:
 * - FORK, body = a spec (spawn.ts). Reply `[i32 pid]`, or `[i32 -1][u32 n][n bytes: error message]`.
 *   The server loads the target's module before forking (its top-level code
 *   runs once, in the server), so that children find it loaded.
 * - WAIT, body = `[i32 pid][f64 timeoutMs, negative: no limit]`. Reply
 *   `[i32 state][i32 exitCode]`: state 1 ended, 0 still running, -1 unknown.
 * - FORGET, body = `[i32 pid]`: the parent has the exit code. No reply.
 * @internal
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

import { requireNative } from './native';
import { ExitWatch, watchExit } from './exit_watch';
import { FrameReader } from './frames';
import type { NativeBinding } from './native';
import * as os from './os';
import { childExecArgv } from './popen/spawn';
import { runForkedChild } from './popen/fork';
import { BaseProcess, currentProcess } from './process';
import { setLongTimeout } from './timeout';
import {
  ChildSpec,
  decodeSpec,
  inheritDescriptors,
  isBootstrappingError,
  prepare,
  resolveSpec,
  resolveSpecSync,
  ResolvedSpec,
  restoreProcess,
} from './spawn';
import { readExactlySync, reportError, usesFork, writeAllSync } from './util';

const FORKSERVER_MAIN = path.join(__dirname, 'forkserver_main.js');

const enum Op {
  Fork = 1,
  Wait = 2,
  Forget = 3,
}

const EVENTS_FD = 3;
const REQUESTS_FD = 4;
const REPLIES_FD = 5;

function request(op: Op, body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame.writeUInt32LE(1 + body.length, 0);
  frame.writeUInt8(op, 4);
  frame.set(body, 5);
  return frame;
}

/** What the parent's side needs of a forkserver child: to be told its exit code. */
export interface ForkServerChild {
  /** Whether the child keeps the parent's event loop alive now. */
  readonly keepsAlive: boolean;
  /** The server reported the child's end (`null`: the server died first: 255, as Python). */
  exited(code: number): void;
}

// --- the parent's side --------------------------------------------------------------

/** The parent's connection to its fork server. */
export class ForkServerClient {
  private static current: ForkServerClient | null = null;
  private readonly children = new Map<number, ForkServerChild>();
  private alive = true;
  private pending: Buffer = Buffer.alloc(0);

  private constructor(
    private readonly server: ChildProcess,
    private readonly requests: number,
    private readonly replies: number,
    private readonly events: net.Socket,
  ) {
    server.unref();
    events.unref();
    events.on('data', (data: Buffer) => this.onEvents(data));
    events.on('error', () => {});
    server.once('exit', () => this.onServerExit());
  }

  /** The running server of this process, started now when there is none. */
  static get(): ForkServerClient {
    if (ForkServerClient.current?.alive !== true) ForkServerClient.current = ForkServerClient.start();
    return ForkServerClient.current;
  }

  private static start(): ForkServerClient {
    const native = requireNative('the forkserver start method');
    const [requestsRead, requestsWrite] = native.pipe();
    const [repliesRead, repliesWrite] = native.pipe();
    let server: ChildProcess;
    try {
      server = spawn(process.execPath, [...childExecArgv(), FORKSERVER_MAIN], {
        env: process.env,
        stdio: ['ignore', 'inherit', 'inherit', 'pipe', requestsRead, repliesWrite],
        windowsHide: true,
      });
    } finally {
      fs.closeSync(requestsRead);
      fs.closeSync(repliesWrite);
    }
    if (server.pid === undefined) {
      fs.closeSync(requestsWrite);
      fs.closeSync(repliesRead);
      throw new Error(`could not start the fork server (${process.execPath})`);
    }
    const client = new ForkServerClient(server, requestsWrite, repliesRead, server.stdio[3] as net.Socket);
    // A forked child of this process does not own this server: it starts its
    // own if it needs one, and must not hold the server's request pipe open.
    // Once: the child's own children must not close those descriptor numbers
    // again (by then the child may have reused them: a manager's sockets).
    const forget = os.registerAtFork({
      afterInChild: () => {
        forget();
        client.forgetInChild();
      },
    });
    return client;
  }

  /** Asks the server to fork a child for `spec`: its pid. Throws the server's error (e.g. the target is not exported). */
  fork(spec: Uint8Array, child: ForkServerChild): number {
    const pid = this.call(request(Op.Fork, spec), 4).readInt32LE(0);
    if (pid < 0) {
      const length = this.read(4).readUInt32LE(0);
      throw new Error(this.read(length).toString('utf8'));
    }
    this.children.set(pid, child);
    this.updateKeepAlive();
    return pid;
  }

  /** Waits up to `timeoutMs` (null: no limit) for the child `pid`: its exit code, or undefined while it runs. */
  waitSync(pid: number, timeoutMs: number | null): number | undefined {
    if (!this.alive) return 255;
    const body = Buffer.allocUnsafe(12);
    body.writeInt32LE(pid, 0);
    body.writeDoubleLE(timeoutMs ?? -1, 4);
    const reply = this.call(request(Op.Wait, body), 8);
    const state = reply.readInt32LE(0);
    return state === 1 ? reply.readInt32LE(4) : state === 0 ? undefined : 255;
  }

  /** The parent has the exit code of `pid`: the server may forget it. */
  forget(pid: number): void {
    this.children.delete(pid);
    this.updateKeepAlive();
    if (!this.alive) return;
    const body = Buffer.allocUnsafe(4);
    body.writeInt32LE(pid, 0);
    try {
      writeAllSync(this.requests, request(Op.Forget, body));
    } catch {
      // The server is gone: nothing to forget.
    }
  }

  /** The events socket keeps the loop alive while a child that should is running. */
  updateKeepAlive(): void {
    if ([...this.children.values()].some((child) => child.keepsAlive)) this.events.ref();
    else this.events.unref();
  }

  /** Stops the server now (its running children go on). For tests and clean shutdowns. */
  static stop(): void {
    const client = ForkServerClient.current;
    ForkServerClient.current = null;
    if (client === null || !client.alive) return;
    client.close();
    client.server.kill('SIGTERM');
  }

  private call(frame: Buffer, replyLength: number): Buffer {
    if (!this.alive) throw new Error('the fork server has exited');
    try {
      writeAllSync(this.requests, frame);
    } catch (error) {
      this.onServerExit();
      throw new Error(`the fork server has exited (${(error as Error).message})`);
    }
    return this.read(replyLength);
  }

  private read(length: number): Buffer {
    const data = readExactlySync(this.replies, length);
    if (data === null) {
      this.onServerExit();
      throw new Error('the fork server has exited');
    }
    return data;
  }

  private onEvents(data: Buffer): void {
    this.pending = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
    let offset = 0;
    for (; offset + 8 <= this.pending.length; offset += 8) {
      this.children.get(this.pending.readInt32LE(offset))?.exited(this.pending.readInt32LE(offset + 4));
    }
    this.pending = this.pending.subarray(offset);
  }

  /** The server died: its children can no longer be reported (exit code 255, as Python's). */
  private onServerExit(): void {
    if (!this.alive) return;
    this.close();
    for (const child of [...this.children.values()]) child.exited(255);
    this.children.clear();
  }

  private close(): void {
    this.alive = false;
    if (ForkServerClient.current === this) ForkServerClient.current = null;
    for (const fd of [this.requests, this.replies]) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
    this.events.destroy();
  }

  private forgetInChild(): void {
    this.alive = false;
    ForkServerClient.current = null;
    this.children.clear();
    for (const fd of [this.requests, this.replies]) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
    this.events.destroy();
    this.server.unref();
  }
}

// --- the server ---------------------------------------------------------------------

/** The server's children: their watchers, then their exit codes until the parent forgets them. */
interface ServerState {
  native: NativeBinding;
  requests: net.Socket;
  events: net.Socket;
  watchers: Map<number, ExitWatch>;
  exited: Map<number, number>;
  /** Sync waits of the parent, answered when the child ends or the time is up. */
  waits: Map<number, () => void>;
}

/** Runs the fork server (forkserver_main.js): serves requests until the parent is gone. */
export function serve(): void {
  const native = requireNative('the fork server');
  usesFork(native);
  const state: ServerState = {
    native,
    requests: new net.Socket({ fd: REQUESTS_FD, readable: true, writable: false }),
    events: new net.Socket({ fd: EVENTS_FD, readable: false, writable: true }),
    watchers: new Map(),
    exited: new Map(),
    waits: new Map(),
  };
  state.events.on('error', () => process.exit(0));
  const frames = new FrameReader();
  state.requests.on('data', (data: Buffer) => {
    for (const frame of frames.push(data)) enqueue(state, frame.readUInt8(0) as Op, frame.subarray(1));
  });
  // End of file: the parent has exited (even killed). Its children go on.
  state.requests.on('end', () => process.exit(0));
  state.requests.on('error', () => process.exit(0));
  rehearseLeaving(native);
}

/**
 * Leaves, once, a server of pipes made for the purpose, as every child leaves
 * this one first: Node's code for it is then compiled here, not in each child
 * (some 100 page faults, 0.2 ms a child).
 */
function rehearseLeaving(native: NativeBinding): void {
  const [requests, events] = native.pipe();
  const [replies, unused] = native.pipe();
  fs.closeSync(unused);
  const reading = new net.Socket({ fd: requests, readable: true, writable: false });
  reading.on('data', () => {});
  const rehearsal = { requests: reading, events: new net.Socket({ fd: events, readable: false, writable: true }) };
  leaveServer({ ...rehearsal, watchers: new Map() }, replies);
}

/** Requests still waiting behind one that waits for an ES module to load; `null` when none. */
let tail: Promise<void> | null = null;

/**
 * Serves requests in order: at once, from the callback that read them, unless
 * an earlier one is still loading a module. A fork from that callback (rather
 * than from a microtask) is the fast path of popen/fork.ts.
 */
function enqueue(state: ServerState, op: Op, body: Buffer): void {
  let next: Promise<void> | undefined;
  if (tail === null) next = serveRequest(state, op, body);
  else next = tail.then(() => serveRequest(state, op, body));
  if (next === undefined) return;
  const mine = (tail = next);
  void mine.finally(() => {
    if (tail === mine) tail = null;
  });
}

/** Serves one request; a Promise when it must wait for a module to load. */
function serveRequest(state: ServerState, op: Op, body: Buffer): Promise<void> | undefined {
  if (op === Op.Wait) return wait(state, body.readInt32LE(0), body.readDoubleLE(4));
  if (op === Op.Forget) {
    state.exited.delete(body.readInt32LE(0));
    return undefined;
  }
  let spec: ChildSpec | undefined;
  try {
    spec = decodeSpec(body);
    const resolved = resolveSpecSync(spec);
    if (resolved !== undefined) return forkChild(state, spec, resolved);
    const asked = spec;
    return resolveSpec(asked)
      .then((later) => forkChild(state, asked, later))
      .catch((error: unknown) => failed(state, asked, error));
  } catch (error) {
    return failed(state, spec, error);
  }
}

/**
 * A request the server could not serve: `start()` throws its error (a target
 * that is not exported...). But a start() in the module's top-level code (an
 * unguarded main module) is the child's error, as under spawn: a child reports
 * it and exits with 1.
 */
function failed(state: ServerState, spec: ChildSpec | undefined, error: unknown): undefined {
  if (spec === undefined || !isBootstrappingError(error)) return replyError(error);
  return forkChild(state, spec, error as Error);
}

function reply(data: Buffer): void {
  writeAllSync(REPLIES_FD, data);
}

function int32s(...values: number[]): Buffer {
  const data = Buffer.allocUnsafe(4 * values.length);
  values.forEach((value, i) => data.writeInt32LE(value, 4 * i));
  return data;
}

function replyError(error: unknown): undefined {
  const message = Buffer.from(error instanceof Error ? error.message : String(error), 'utf8');
  reply(Buffer.concat([int32s(-1, message.length), message]));
  return undefined;
}

/** Forks the child of `spec`; one that only reports `resolved` and exits with 1 when that is an error. */
function forkChild(state: ServerState, spec: ChildSpec, resolved: ResolvedSpec | Error): undefined {
  let process_: BaseProcess | undefined;
  // The parent waits for the reply: its descriptors are still open to copy.
  const fds = spec.fds.map(([ownerPid, fd]) => state.native.takeFd(ownerPid, fd));
  const pid = runForkedChild(state.native, {
    name: spec.state.name,
    daemon: spec.state.daemon,
    _beforeFork: (precompile) => {
      currentProcess()._beforeFork(precompile);
      if (resolved instanceof Error) return;
      precompile(resolved.processClass.prototype.run);
      if (resolved.target !== null) precompile(resolved.target);
    },
    _becomeChild: (leave) => {
      leaveServer(state, REPLIES_FD);
      inheritDescriptors(spec, fds);
      prepare(spec);
      if (resolved instanceof Error) return;
      process_ = restoreProcess(spec, resolved);
      process_._becomeChild(leave);
    },
    _bootstrap: () => (process_ === undefined ? reportError(spec.state.name, resolved) : process_._bootstrap()),
  });
  for (const fd of fds) fs.closeSync(fd);
  reply(int32s(pid));
  state.watchers.set(
    pid,
    watchExit(state.native, pid, (error, _pid, status) => {
      state.watchers.delete(pid);
      const code = error === null ? os.waitstatusToExitcode(status) : 255;
      state.exited.set(pid, code);
      state.waits.get(pid)?.();
      state.events.write(int32s(pid, code));
    }),
  );
  return undefined;
}

/** Answers a WAIT now if the child has ended or the timeout is 0, otherwise when it ends or the time is up. */
function wait(state: ServerState, pid: number, timeoutMs: number): undefined {
  const answer = (): void => {
    state.waits.delete(pid);
    const code = state.exited.get(pid);
    reply(code !== undefined ? int32s(1, code) : state.watchers.has(pid) ? int32s(0, 0) : int32s(-1, 0));
  };
  if (state.exited.has(pid) || !state.watchers.has(pid) || timeoutMs === 0) {
    answer();
    return undefined;
  }
  const cancelTimer = timeoutMs < 0 ? undefined : setLongTimeout(answer, timeoutMs);
  state.waits.set(pid, () => {
    cancelTimer?.();
    answer();
  });
  return undefined;
}

/** In a child just forked: the server's channels and watchers are the server's alone. */
function leaveServer(state: Pick<ServerState, 'requests' | 'events' | 'watchers'>, replies: number): void {
  state.requests.destroy();
  state.events.destroy();
  fs.closeSync(replies);
  for (const watcher of state.watchers.values()) watcher.close();
  state.watchers.clear();
}
