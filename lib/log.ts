import pino, { type DestinationStream, type Logger } from 'pino';

/** Structured JSON logs; credentials never reach them, and these paths are redacted as a second guard. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
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
