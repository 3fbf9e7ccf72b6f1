import type { Request, Response } from 'express';
import { parse as parseCookies } from 'cookie';
import { secretsEqual, type Vault } from '../lib/vault/crypto.js';

/**
 * The start page hands the browser that passed its identity check a cookie for that one authorization request;
 * the callback accepts a code only from a browser that has it. A provider URL lifted from the start page's
 * redirect and opened in another browser (a victim's) therefore connects nothing.
 */
export class ConsentCookies {
  constructor(
    private readonly vault: Vault,
    /** Production: `__Host-` prefix and Secure; development over plain HTTP: neither. */
    private readonly secure: boolean,
  ) {}

  private name(requestId: string): string {
    return `${this.secure ? '__Host-' : ''}acb-consent-${requestId}`;
  }

  /** Only the broker can make it: derived from the request id with the vault's key, never stored. */
  private value(requestId: string): string {
    return this.vault.deriveToken('consent-browser', requestId);
  }

  set(res: Response, requestId: string, expiresAt: Date): void {
    res.cookie(this.name(requestId), this.value(requestId), {
      httpOnly: true,
      secure: this.secure,
      // Lax: the provider's redirect back to the callback is a top-level GET, which carries it.
      sameSite: 'lax',
      path: '/',
      maxAge: Math.max(1000, expiresAt.getTime() - Date.now()),
    });
  }

  presentIn(req: Request, requestId: string): boolean {
    const header = req.get('cookie');
    if (!header) return false;
    const presented = parseCookies(header)[this.name(requestId)];
    if (!presented) return false;
    return secretsEqual(presented, this.value(requestId));
  }

  clear(res: Response, requestId: string): void {
    res.clearCookie(this.name(requestId), { httpOnly: true, secure: this.secure, sameSite: 'lax', path: '/' });
  }
}
