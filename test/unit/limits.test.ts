import { ipKeyGenerator } from 'express-rate-limit';
import { describe, expect, it } from 'vitest';
import { clientIpKey } from '../../api/limits.js';

describe('clientIpKey', () => {
  it('keys exactly as the rate-limit library does, without its IPv6 parse for IPv4 clients', () => {
    const addresses = [
      '127.0.0.1',
      '203.0.113.9',
      '::ffff:127.0.0.1',
      '::FFFF:198.51.100.7',
      '::1',
      '2001:db8:abcd:12ff::1',
      '2001:db8:abcd:1200:ffff:ffff:ffff:ffff',
      'fe80::1',
    ];
    for (const ip of addresses) expect(clientIpKey({ ip }), ip).toBe(ipKeyGenerator(ip));
    // Two IPv6 addresses in one /56 share a budget; a different /56 does not.
    expect(clientIpKey({ ip: '2001:db8:abcd:12ff::1' })).toBe(clientIpKey({ ip: '2001:db8:abcd:1200::9' }));
    expect(clientIpKey({ ip: '2001:db8:abcd:1300::1' })).not.toBe(clientIpKey({ ip: '2001:db8:abcd:1200::1' }));
    expect(clientIpKey({})).toBe('unknown');
  });
});
