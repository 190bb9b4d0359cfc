import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/**
 * `/metrics` (Prometheus), `/healthz` (the process is alive) and `/readyz` (200 only when
 * `ready()` says so; the body says why), on one port.
 */
export function startHttpServer(options: {
  port: number;
  host?: string;
  registry: Registry;
  ready: () => { ready: boolean; [detail: string]: unknown };
}): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': options.registry.contentType });
          res.end(text);
        },
        (error: unknown) => json(500, { error: String(error) }),
      );
    } else if (path === '/healthz') {
      json(200, { status: 'ok' });
    } else if (path === '/readyz') {
      const state = options.ready();
      json(state.ready ? 200 : 503, state);
    } else {
      json(404, { error: 'not found' });
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve(server));
  });
}
