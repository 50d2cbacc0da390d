import express, { type RequestHandler } from 'express';
import { existsSync } from 'node:fs';
import { extname, join } from 'node:path';

/** Paths the web UI never answers: the API and the operations routes get JSON 404s instead. */
const RESERVED = /^\/(api(\/|$)|healthz$|readyz$|metrics$)/;

/**
 * Serves the built web UI from `webDir` at `/`, with index.html for client-side routes (paths
 * without a file extension). Undefined when the directory has no index.html.
 */
export function webUiMiddleware(webDir: string): RequestHandler | undefined {
  const index = join(webDir, 'index.html');
  if (!existsSync(index)) return undefined;
  const files = express.static(webDir, {
    index: ['index.html'],
    dotfiles: 'ignore',
    fallthrough: true,
    maxAge: '1h',
  });
  return (req, res, next) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || RESERVED.test(req.path)) return next();
    res.locals.staticFile = true;
    files(req, res, () => {
      if (extname(req.path) !== '') return next();
      res.setHeader('Cache-Control', 'no-cache');
      res.sendFile(index, (error) => (error ? next(error) : undefined));
    });
  };
}
