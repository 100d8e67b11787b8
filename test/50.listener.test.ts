/**
 * Listener and Client (Unix sockets and TCP, the authkey handshake both
 * ways), a real Python peer on the wire, and connection.wait().
 */
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import * as mp from '..';
import { FIXTURES, spawnTracked } from './helpers';

const { Listener, Client, ClientAsync, wait, waitSync } = mp.connection;

function python(args: string[]): { child: ChildProcess; stdout: Promise<string>; exit: Promise<number | null> } {
  const child = spawnTracked('python3', [path.join(FIXTURES, 'connection_python.py'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr?.resume(); // expected errors (a refused key) stay out of the test log
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: exit.then(() => out), exit };
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout?.on('data', (chunk: Buffer | string) => {
      text += chunk.toString();
      if (text.includes('\n')) resolve(text.split('\n')[0]);
    });
    child.once('exit', () => reject(new Error(`python exited before printing: ${text}`)));
  });
}

describe('Listener and Client', () => {
  test('a Unix socket at a fresh path, with an authkey: messages both ways; close removes the path', async () => {
    const listener = new Listener(null, { authkey: 'secret' });
    const address = listener.address as string;
    expect(typeof address).toBe('string');
    expect(fs.existsSync(address)).toBe(true);
    const [server, client] = await Promise.all([listener.accept(), ClientAsync(address, { authkey: 'secret' })]);
    client.send({ hello: 'server' });
    expect(await server.recv()).toEqual({ hello: 'server' });
    server.sendBytes(Buffer.from('hi'));
    expect(client.recvBytesSync().toString()).toBe('hi');
    client.close();
    await expect(server.recv()).rejects.toBeInstanceOf(mp.EOFError);
    server.close();
    listener.close();
    expect(fs.existsSync(address)).toBe(false);
    listener.close();
    await expect(listener.accept()).rejects.toThrow(/closed/);
  });

  test('TCP on port 0: address is the bound [host, port]; lastAccepted is the peer', async () => {
    const listener = new Listener(['127.0.0.1', 0]);
    const [host, port] = listener.address as [string, number];
    expect(host).toBe('127.0.0.1');
    expect(port).toBeGreaterThan(0);
    const [server, client] = await Promise.all([listener.accept(), ClientAsync(['127.0.0.1', port])]);
    expect((listener.lastAccepted as [string, number])[0]).toBe('127.0.0.1');
    client.send(1);
    expect(server.recvSync()).toBe(1);
    server.close();
    client.close();
    listener.close();
  });

  test('a client with another key is refused with AuthenticationError and the server never sees a message', async () => {
    const listener = new Listener(['127.0.0.1', 0], { authkey: Buffer.from('right') });
    const accepted = listener.accept();
    const client = ClientAsync(listener.address, { authkey: 'wrong' });
    await expect(accepted).rejects.toBeInstanceOf(mp.AuthenticationError);
    await expect(client).rejects.toBeInstanceOf(mp.AuthenticationError);
    // A client without any key does not get through either.
    const second = listener.accept();
    const plain = await ClientAsync(listener.address);
    plain.sendBytes(Buffer.from('not a handshake answer'));
    await expect(second).rejects.toBeInstanceOf(mp.AuthenticationError);
    plain.close();
    listener.close();
  });

  test('bad arguments are TypeErrors naming them; a refused connection is ECONNREFUSED', async () => {
    expect(() => new Listener(42 as unknown as string)).toThrow(/address/);
    expect(() => new Listener(null, { backlog: -1 })).toThrow(RangeError);
    expect(() => new Listener(['127.0.0.1', 0], { family: 'AF_UNIX' })).toThrow(/family/);
    expect(() => Client('/nonexistent/socket')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    const listener = new Listener(['127.0.0.1', 0]);
    const port = (listener.address as [string, number])[1];
    listener.close();
    await expect(ClientAsync(['127.0.0.1', port])).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(() => Client(['127.0.0.1', port], { authkey: 5 as unknown as string })).toThrow(/authkey/);
  });
});

describe('a Python peer (python3 multiprocessing.connection)', () => {
  test('our Client talks to a Python Listener with an authkey', async () => {
    const peer = python(['listen', 'shared key']);
    const port = Number(await firstLine(peer.child));
    const conn = Client(['127.0.0.1', port], { authkey: 'shared key' });
    conn.sendBytes(Buffer.from('abc'));
    expect(conn.recvBytesSync().toString()).toBe('cba');
    const big = Buffer.alloc(1 << 20, 1);
    big[0] = 2;
    conn.sendBytes(big);
    const back = await conn.recvBytes();
    expect(back.length).toBe(big.length);
    expect(back[back.length - 1]).toBe(2);
    conn.close();
    expect(await peer.exit).toBe(0);
  });

  test('a Python Client talks to our Listener with an authkey', async () => {
    const listener = new Listener(['127.0.0.1', 0], { authkey: 'shared key' });
    const peer = python(['connect', 'shared key', '127.0.0.1', String((listener.address as [string, number])[1])]);
    const conn = await listener.accept();
    expect((await conn.recvBytes()).toString()).toBe('hello from python');
    conn.sendBytes(Buffer.from('hello from node'));
    expect((await peer.stdout).trim()).toBe('hello from node');
    expect(await peer.exit).toBe(0);
    conn.close();
    listener.close();
  });

  test('a Python Client with the wrong key is refused on both sides', async () => {
    const listener = new Listener(['127.0.0.1', 0], { authkey: 'right' });
    const peer = python(['connect', 'wrong', '127.0.0.1', String((listener.address as [string, number])[1])]);
    await expect(listener.accept()).rejects.toBeInstanceOf(mp.AuthenticationError);
    expect(await peer.exit).not.toBe(0);
    listener.close();
  });
});

describe('wait', () => {
  test('resolves with the connections that have a message, or [] after the timeout', async () => {
    const [a, b] = mp.Pipe();
    const [c, d] = mp.Pipe();
    expect(await wait([b, d], 0)).toEqual([]);
    expect(await wait([b, d], 5)).toEqual([]);
    const waiting = wait([b, d]);
    c.send('to d');
    expect(await waiting).toEqual([d]);
    expect(waitSync([b, d], 0)).toEqual([d]);
    a.send('to b');
    expect(waitSync([b, d])).toEqual([b, d]);
    expect(d.recvSync()).toBe('to d');
    expect(b.recvSync()).toBe('to b');
    expect(() => waitSync(['x' as unknown as number])).toThrow(TypeError);
    for (const conn of [a, b, c, d]) conn.close();
  });

  test.each(mp.getAllStartMethods())('a Process sentinel becomes ready when the child ends (%s)', async (method) => {
    const ctx = mp.getContext(method);
    const [reader, writer] = mp.Pipe(false);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const targets = require('./fixtures/connection_targets.js') as { echoSync(conn: mp.Connection): void };
    const p = new ctx.Process({ target: targets.echoSync, args: [reader] });
    p.start();
    expect(await wait([p.sentinel], 0)).toEqual([]);
    writer.send(null); // the child stops
    expect(await wait([p.sentinel])).toEqual([p.sentinel]);
    await p.join();
    expect(waitSync([p.sentinel], 0)).toEqual([p.sentinel]);
    p.close();
    reader.close();
    writer.close();
  });
});
