/**
 * The spawn start method, as CPython's `popen_spawn_posix.py`: the child is a
 * fresh `node` started through `child_process` (the only method on Windows,
 * available everywhere), running spawn_main.js with the parent's `execArgv`
 * (so loaders of TypeScript and the like apply in the child too). The spec of
 * the process (spawn.ts) travels on a pipe at fd 3. With the addon, this
 * process reaps the child itself, as a forked one (see takeFromLibuv()).
 * @internal
 */
import { ChildProcess, spawn } from 'child_process';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { loadNative } from '../native';
import type { BaseProcess } from '../process';
import { childSpec, encodeSpec } from '../spawn';
import { pollSync, procExitStatus, writeAllSync } from '../util';
import { BasePopen, StartMethod } from './popen';
import { Reaper } from './reaper';

const SPAWN_MAIN = path.join(__dirname, '..', 'spawn_main.js');

/**
 * Flags of the parent's `node` that a child needs too (loaders, `--require`,
 * `--import`, V8 options), without those that would make it run something
 * else (`--eval`, `--test`, `--watch`) or clash with the parent (`--inspect`).
 */
export function childExecArgv(): string[] {
  const withValue = new Set(['-e', '--eval', '-p', '--print', '--input-type']);
  const dropped = /^--(inspect|debug|test|watch|check|interactive|eval|print|input-type)(-|=|$)|^-[ipc]$|^-e$|^-p$/;
  const kept: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    if (withValue.has(argv[i])) i++;
    else if (!dropped.test(argv[i])) kept.push(argv[i]);
  }
  return kept;
}

/** The exit code Node reports as (code, signal). */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  return code ?? -(os.constants.signals[signal as NodeJS.Signals] ?? 0);
}

/**
 * Writes the spec to the child's fd 3 before start() returns, as Python does:
 * a joinSync() right after start() blocks the event loop, which would never
 * write it otherwise. (Where libuv's pipe has no descriptor, as on Windows,
 * the event loop writes it.)
 */
function sendSpec(pipe: net.Socket, spec: Buffer): void {
  pipe.on('error', () => {}); // the child died before reading it: its exit code tells
  const fd = (pipe as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    pipe.end(spec);
    return;
  }
  try {
    writeAllSync(fd, spec);
  } catch {
    // EPIPE: the child is gone; its exit code tells why
  }
  pipe.destroy(); // end of file for the child
}

/**
 * Takes `child` from libuv, which reaps the children it spawned only when the
 * event loop runs: `start()` + `joinSync()` in a synchronous loop would leave
 * a zombie per child until then. Closing the ChildProcess's handle takes the
 * pid out of libuv's list of children to reap (so libuv neither reaps it nor
 * waits for a later process given the same pid); this process then reaps it
 * itself, as a forked child, and Node's 'exit' event is not emitted. False
 * where the handle is not there to close (libuv keeps the child).
 */
function takeFromLibuv(child: ChildProcess): boolean {
  const owner = child as unknown as { _handle: { close(): void } | null };
  if (typeof owner._handle?.close !== 'function') return false;
  owner._handle.close();
  owner._handle = null; // as Node leaves it after 'exit': kill(), ref() and unref() do nothing
  return true;
}

export class SpawnPopen extends BasePopen {
  readonly method = 'spawn';
  readonly pid: number;
  private readonly child: ChildProcess;
  /** With the addon, this process reaps the child itself; without it (Windows), libuv does and reports 'exit'. */
  private readonly reaper: Reaper | null = null;

  /** @param defaultMethod the parent's start method when one was set: the child's default too. */
  constructor(process_: BaseProcess, defaultMethod: StartMethod | null) {
    super();
    // Everything that may fail (a closure for a target, an argument that
    // cannot be sent) fails here, before a child exists.
    const childSpec_ = childSpec(process_, 'spawn', defaultMethod);
    const spec = encodeSpec(childSpec_);
    this.child = spawn(process.execPath, [...childExecArgv(), SPAWN_MAIN], {
      cwd: process.cwd(),
      env: process.env,
      // The descriptors the arguments hold follow the spec's pipe (FIRST_PASSED_FD on).
      stdio: ['ignore', 'inherit', 'inherit', 'pipe', ...childSpec_.fds.map(([, fd]) => fd)],
      windowsHide: true,
    });
    let spawnError: Error | undefined;
    this.child.on('error', (error) => {
      spawnError = error;
    });
    if (this.child.pid === undefined) {
      throw new Error(`could not start a child node process (${process.execPath}): ${spawnError?.message ?? 'spawn failed'}`);
    }
    this.pid = this.child.pid;
    const native = loadNative();
    if (native !== null && takeFromLibuv(this.child)) this.reaper = new Reaper(native, this.pid, (code) => this.settle(code));
    else this.child.once('exit', (code, signal) => this.settle(exitCodeOf(code, signal)));
    sendSpec(this.child.stdio[3] as net.Socket, spec);
    this.updateWaitedFor();
  }

  /**
   * Without the addon, libuv reaps the child and reports it as 'exit'; /proc
   * shows it ended a little sooner, without reaping.
   */
  protected check(): void {
    if (this.reaper !== null) {
      this.reaper.poll();
      return;
    }
    const status = procExitStatus(this.pid);
    if (status !== undefined) this.settle(status);
  }

  waitSync(timeoutMs: number | null): number | null {
    if (this.ended) return this.returncode;
    if (this.reaper !== null) this.reaper.waitSync(timeoutMs);
    else pollSync(() => (this.poll() !== null || this.ended ? true : undefined), timeoutMs);
    return this.returncode;
  }

  protected setWaitedFor(waitedFor: boolean): void {
    if (this.reaper !== null) this.reaper.setWaitedFor(waitedFor);
    else if (waitedFor) this.child.ref();
    else this.child.unref();
  }

  close(): void {
    this.reaper?.abandon();
  }

  abandon(): void {
    if (this.reaper !== null) this.reaper.abandon();
    else this.child.unref();
  }
}
