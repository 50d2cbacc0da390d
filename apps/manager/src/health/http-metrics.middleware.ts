import type { RequestHandler } from 'express';
import { performance } from 'node:perf_hooks';
import type { MetricsService } from './metrics.service';

/**
 * Counts every answered request by method, the route *template* that handled it (bounded label
 * values: never the raw path), and status.
 */
export function httpMetricsMiddleware(metrics: MetricsService): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.once('finish', () => {
      const template = (req.route as { path?: unknown } | undefined)?.path;
      const route =
        typeof template === 'string'
          ? `${req.baseUrl}${template}`
          : res.locals.staticFile
            ? 'static'
            : 'unmatched';
      metrics.observeHttp(req.method, route, res.statusCode, (performance.now() - started) / 1000);
    });
    next();
  };
}
