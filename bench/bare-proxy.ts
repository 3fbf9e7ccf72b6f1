import { createServer } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';

/**
 * The floor for the HTTP proxy's figures: the least a Node process can do to relay a request (node:http in,
 * undici's request out with a fixed token, the answer piped back; no authentication, access control, limits,
 * audit or token scan). Run by `npm run bench` in a process of its own beside the API. Env: PORT, UPSTREAM (a
 * base URL), TOKEN.
 */
const upstream = process.env.UPSTREAM!;
const authorization = `Bearer ${process.env.TOKEN}`;
const dispatcher = new Agent({ keepAliveTimeout: 60_000 });

createServer((req, res) => {
  if (req.url === '/healthz') return void res.end('ok');
  request(`${upstream}${req.url}`, { method: 'GET', headers: { authorization, accept: req.headers.accept ?? '*/*' }, dispatcher }).then(
    async (answer) => {
      res.statusCode = answer.statusCode;
      for (const [name, value] of Object.entries(answer.headers))
        if (value !== undefined && name !== 'connection' && name !== 'keep-alive' && name !== 'transfer-encoding')
          res.setHeader(name, value);
      await pipeline(answer.body, res).catch(() => {});
    },
    () => {
      res.statusCode = 502;
      res.end();
    },
  );
}).listen(Number(process.env.PORT), '127.0.0.1');
