import type { IncomingMessage, ServerResponse } from 'node:http';
import { respondWithError } from '../errors.js';
import type { GatewayDeps } from './deps.js';
import { answerHere, plainRequest, readBody, withinLimit, type Lane, type LaneSettings } from './lane.js';
import { forward, hasBody, PROXY_ROUTE, proxyCall, REPLAYABLE_BYTES, type ProxyCall } from './proxy.js';
import { PROXY_PREFIX, proxyToolId } from './proxy-path.js';

/**
 * The HTTP proxy's fast lane (see lane.ts): it identifies the caller (the same once-per-request answer Express's
 * gate gives) after counting it against the per-address limit, checks access and the path, then forwards
 * exactly as the Express route does. An encoded request body, like every refusal, is left to Express.
 */
export class ProxyLane implements Lane {
  constructor(
    private readonly deps: GatewayDeps,
    private readonly settings: LaneSettings,
  ) {}

  takes(req: IncomingMessage): boolean {
    return req.url !== undefined && req.url.startsWith(`${PROXY_PREFIX}/`);
  }

  async serve(req: IncomingMessage, res: ServerResponse, express: () => void): Promise<void> {
    if (!plainRequest(this.settings, req)) return express();
    // Counted here once (Express's limiter skips a request already counted).
    if (!(await withinLimit(this.settings, req, res, PROXY_ROUTE))) return;
    const call = await this.admit(req).catch(() => null);
    if (!call) return express();
    answerHere(this.settings, req, res, PROXY_ROUTE);
    try {
      await forward(this.deps, req, res, call, await this.bodyOf(req));
    } catch (err) {
      respondWithError(this.deps.log, err, res);
    }
  }

  /** The call, when the lane may answer it; null: Express answers. */
  private async admit(req: IncomingMessage): Promise<ProxyCall | null> {
    const { gate } = this.deps;
    if (hasBody(req.method) && (req.headers['content-encoding'] ?? 'identity') !== 'identity') return null;
    const toolId = proxyToolId(req.url!);
    if (toolId === null) return null;
    const caller = await gate.callerOf(req);
    const call = proxyCall(this.deps, caller, toolId, req.method!, req.url!);
    const use = await gate.refusal(caller, `tool:${call.owner.toolId}:use`);
    if (use || (await gate.refusal(caller, `tool:${call.owner.toolId}:proxy:${req.method}`))) return null;
    return call;
  }

  /** The body: held when it can be replayed after a refresh (up to 1 MiB), else streamed. */
  private async bodyOf(req: IncomingMessage): Promise<Buffer | 'stream' | undefined> {
    if (!hasBody(req.method)) return undefined;
    if (Number(req.headers['content-length'] ?? 0) > REPLAYABLE_BYTES) return 'stream';
    return (await readBody(req, REPLAYABLE_BYTES)) ?? undefined;
  }
}
