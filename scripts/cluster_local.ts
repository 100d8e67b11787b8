/**
 * A cluster on this machine, for the cluster demo, benchmark and tests: a
 * redis-server of our own on a free 127.0.0.1 port in a temporary directory,
 * and worker nodes as processes of their own (the `node-multiprocessing
 * worker` command), each waited for by the line it prints. Its exported
 * functions are also the tasks of the demo and the benchmark (the nodes load
 * this module with --require), and, run as a program with `bare <url>
 * <queue>`, it is a bare BullMQ worker, the benchmark's baseline.
 */
import { ChildProcess, spawn } from 'child_process';
import { once } from 'events';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

/** The `node-multiprocessing` command's script, as built in dist/. */
export const CLI = path.join(__dirname, '..', 'dist', 'cluster', 'cli.js');

// --- tasks ---------------------------------------------------------------------------

/** The benchmark's tiny task. */
export function square(x: number): number {
  return x * x;
}

/** The demo's task: the number of primes below `n`, by trial division (a few ms of work). */
export function countPrimes(n: number): number {
  let count = 0;
  for (let candidate = 2; candidate < n; candidate++) {
    let prime = true;
    for (let divisor = 2; divisor * divisor <= candidate; divisor++) {
      if (candidate % divisor === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

// --- processes ---------------------------------------------------------------------

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

/** Resolves with the first line of `stream` that matches `pattern`; rejects if the process ends first. */
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
    const onEnd = (error?: Error): void => {
      cleanup();
      reject(error ?? new Error(`process ${child.pid} ended (${child.exitCode ?? child.signalCode}) before printing ${pattern}: ${buffered}`));
    };
    const cleanup = (): void => {
      stream.off('data', onData);
      child.off('exit', onEnd);
      child.off('error', onEnd);
    };
    stream.on('data', onData);
    child.on('exit', () => onEnd());
    child.on('error', onEnd);
  });
}

/** Whether Debian's (or any) redis-server is on the PATH. */
export function hasRedisServer(): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => fs.existsSync(path.join(dir, 'redis-server')));
}

/** A redis-server of our own, without persistence, in a temporary directory. */
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

  /** Starts the server (again, on the same port: a restart). */
  async launch(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir];
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    await lineOf(child, child.stdout!, /Ready to accept connections/);
  }

  /** Kills the server (SIGKILL: Redis gone at once, and its data) and waits for its end. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Kills the server and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface NodeProcessOptions {
  name: string;
  /** Modules of tasks (default: this one). */
  require?: string[];
  processes?: number;
  /** More arguments of the worker command. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/** A worker node in a process of its own, standing in for a machine; its output is kept, not printed. */
export class NodeProcess {
  readonly output = { stdout: '', stderr: '' };

  private constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    child.stdout!.on('data', (data: Buffer) => (this.output.stdout += data.toString()));
    child.stderr!.on('data', (data: Buffer) => (this.output.stderr += data.toString()));
  }

  /** Starts `node-multiprocessing worker` on `queue`; resolves once it serves. */
  static async start(url: string, queue: string, options: NodeProcessOptions): Promise<NodeProcess> {
    const modules = options.require ?? [__filename];
    const args = [CLI, 'worker', '--connection', url, '--queue', queue, '--name', options.name];
    for (const module of modules) args.push('--require', module);
    args.push('--processes', String(options.processes ?? 2), ...(options.args ?? []));
    return NodeProcess.launch(args, options.name, options.env);
  }

  /** Runs node with `args`, a program that prints "serving queue" once it serves; resolves then. */
  static async launch(args: string[], name: string, env: NodeJS.ProcessEnv = {}): Promise<NodeProcess> {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const node = new NodeProcess(child, name);
    await lineOf(child, child.stdout!, /serving queue/);
    return node;
  }

  /** Sends `signal` and waits for the node's end: its exit code, or the signal that ended it. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
    const { child } = this;
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode!;
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    child.kill(signal);
    const [code, killedBy] = await exited;
    return code ?? killedBy!;
  }
}

// --- a bare BullMQ worker ---------------------------------------------------------------

/** `node cluster_local.js bare <url> <queue>`: a BullMQ worker adding job.data.a and job.data.b, nothing of ours. */
async function bareWorker(url: string, queue: string): Promise<void> {
  const { Worker } = await import('bullmq');
  type Sum = { a: number; b: number };
  const worker = new Worker<Sum, number>(queue, async (job) => job.data.a + job.data.b, {
    connection: { url, maxRetriesPerRequest: null },
    concurrency: 4,
  });
  await worker.waitUntilReady();
  process.stdout.write('serving queue (bare BullMQ worker)\n');
  process.on('SIGTERM', () => void worker.close().then(() => process.exit(0)));
}

/** Starts a bare BullMQ worker in a process of its own (see bareWorker). */
export function startBareWorker(url: string, queue: string): Promise<NodeProcess> {
  return NodeProcess.launch([__filename, 'bare', url, queue], 'bare');
}

if (require.main === module && process.argv[2] === 'bare') void bareWorker(process.argv[3], process.argv[4]);
