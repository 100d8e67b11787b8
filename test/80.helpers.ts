/**
 * Helpers of the cluster tests (test/80.*): a real redis-server on a free
 * 127.0.0.1 port in a temporary directory, and worker nodes as separate
 * processes (the `node-multiprocessing worker` command), each waited for by
 * the line it prints, never by time.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { once } from 'events';

import IORedis from 'ioredis';

export const CLI = path.join(__dirname, '..', 'dist', 'cluster', 'cli.js');
export const TASKS = path.join(__dirname, 'fixtures', 'cluster_tasks.js');

/** A free TCP port on 127.0.0.1 (the kernel's pick). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves with the first line of `stream` that matches; rejects if the process exits first. */
export function lineOf(child: ChildProcess, stream: NodeJS.ReadableStream, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (data: Buffer): void => {
      buffered += data.toString();
      const line = buffered.split('\n').find((candidate) => pattern.test(candidate));
      if (line !== undefined) {
        cleanup();
        resolve(line);
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`process ${child.pid} exited (${code ?? signal}) before printing ${pattern}: ${buffered}`));
    };
    const cleanup = (): void => {
      stream.off('data', onData);
      child.off('exit', onExit);
    };
    stream.on('data', onData);
    child.on('exit', onExit);
  });
}

/** A redis-server of the test's own, without persistence, in a temporary directory. */
export class RedisServer {
  private child: ChildProcess | undefined;
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-redis-'));

  private constructor(readonly port: number) {}

  static async start(): Promise<RedisServer> {
    const server = new RedisServer(await freePort());
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** A client of the test's own (quit it). */
  client(): IORedis {
    return new IORedis(this.url, { maxRetriesPerRequest: null });
  }

  /** Starts the server (again, on the same port: a restart). */
  async launch(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    await lineOf(child, child.stdout!, /Ready to accept connections/);
  }

  /** Kills the server (SIGKILL: Redis gone at once, its data with it) and waits for its end. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A worker node in a process of its own, standing in for a machine. */
export class NodeProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly name: string,
    readonly output: { stdout: string; stderr: string },
  ) {}

  static async start(
    redis: RedisServer,
    queue: string,
    options: { name: string; processes?: number; args?: string[]; env?: NodeJS.ProcessEnv },
  ): Promise<NodeProcess> {
    const args = [CLI, 'worker', '--connection', redis.url, '--queue', queue, '--require', TASKS, '--name', options.name];
    args.push('--processes', String(options.processes ?? 2), ...(options.args ?? []));
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CLUSTER_TEST_REDIS: redis.url, CLUSTER_TEST_NODE: options.name, ...options.env },
    });
    const output = { stdout: '', stderr: '' };
    child.stdout!.on('data', (data: Buffer) => (output.stdout += data.toString()));
    child.stderr!.on('data', (data: Buffer) => (output.stderr += data.toString()));
    await lineOf(child, child.stdout!, /serving queue/);
    return new NodeProcess(child, options.name, output);
  }

  /** Sends `signal` and waits for the node's end: its exit code or signal. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode ?? this.child.signalCode!;
    const exited = once(this.child, 'exit') as Promise<[number | null, string | null]>;
    this.child.kill(signal);
    const [code, killedBy] = await exited;
    return code ?? killedBy!;
  }
}

/** Polls `condition` (Redis state) until it holds: the state is the event waited for; jest's timeout bounds it. */
export async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

let queues = 0;
/** A queue name of its own for each test. */
export function queueName(): string {
  return `test-${process.pid}-${++queues}`;
}
