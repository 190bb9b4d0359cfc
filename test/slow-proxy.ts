import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real server that holds every new connection `delayMs` before
 * it reaches the server (a Redis far away, or slow to accept): the client's socket is
 * open at once, its first reply comes late. `close()` ends every connection.
 */
export class SlowProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #port = 0;

  private constructor(target: { host: string; port: number }, delayMs: number) {
    this.#server = createServer((client) => {
      this.#track(client);
      client.pause();
      const timer = setTimeout(() => {
        const upstream = this.#track(connect(target.port, target.host));
        upstream.on('connect', () => {
          client.pipe(upstream);
          upstream.pipe(client);
          client.resume();
        });
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
      }, delayMs);
      client.on('close', () => clearTimeout(timer));
    });
  }

  /** Listens on a loopback port in front of `url` (`redis://host:port`). */
  static async start(url: string, delayMs: number): Promise<SlowProxy> {
    const { hostname, port } = new URL(url);
    const proxy = new SlowProxy({ host: hostname, port: Number(port) }, delayMs);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.#port = (proxy.#server.address() as { port: number }).port;
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #track(socket: Socket): Socket {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => this.#sockets.delete(socket));
    return socket;
  }
}
