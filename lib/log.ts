import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

/**
 * Structured JSON logs; credentials never reach them, and these paths are redacted as a second guard. `readable`
 * (development on a terminal) prints them for people instead: one coloured line each.
 */
export function createLogger(level: string, destination?: DestinationStream, opts: { readable?: boolean } = {}): Logger {
  if (!destination && opts.readable)
    destination = pretty({ colorize: true, sync: true, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss' });
  return pino(
    {
      level,
      base: { service: 'credential-broker' },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.cookie',
          'req.headers["x-user-identity"]',
          '*.access_token',
          '*.refresh_token',
          '*.client_secret',
          '*.code_verifier',
          '*.code',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

export type { Logger };
