// An OpenID Certified provider for tests: the npm package `oidc-provider` (9.x), configured as
// companies run theirs, not bent to the app. Started by guardrails.testing.oidc_provider
// (serve_oidc_provider), which passes the configuration as JSON in OIDC_PROVIDER_CONFIG and
// the package's entry file in OIDC_PROVIDER_MODULE (ES modules ignore NODE_PATH).
//
// What it does, as the package ships it:
// - PKCE required; the devInteractions login form (any login, any password) and consent page;
// - ID tokens that conform to OIDC Core 5.4: when an access token is issued, the ID token holds
//   only sub (and the protocol claims); email, name and groups are at the userinfo endpoint;
// - groups released only for the `groups` scope;
// - resource indicators (RFC 8707): asking for `resource` gives an RFC 9068 JWT access token
//   (typ at+jwt) whose aud is that resource; without it the access token is opaque;
// - RP-initiated logout (end_session_endpoint, with a confirmation form) and back-channel
//   logout (a logout token posted to each client's backchannel_logout_uri);
// - each client's registered token_endpoint_auth_method enforced.
import crypto from 'node:crypto';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.env.OIDC_PROVIDER_CONFIG);
const { default: Provider, errors } = await import(
  pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href
);

const users = config.users || {};
const resources = config.resources || {}; // indicator -> {scope, ttl}

function signingKeys() {
  const keys = [];
  for (const alg of config.signing_algs || ['RS256']) {
    const pair = alg.startsWith('ES')
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = pair.privateKey.export({ format: 'jwk' });
    keys.push({ ...jwk, kid: `${alg.toLowerCase()}-${crypto.randomUUID().slice(0, 8)}`, alg, use: 'sig' });
  }
  return keys;
}

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: signingKeys() },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        const server = resources[indicator];
        if (!server) throw new errors.InvalidTarget();
        return {
          scope: server.scope || 'api',
          audience: indicator,
          accessTokenTTL: server.ttl || 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: server.alg || 'RS256' } },
        };
      },
    },
  },
  // access_token_claims: user claims also put into access tokens, as Keycloak's "Add to access
  // token" or an Okta access-token claim does (API callers' roles come from their token)
  extraTokenClaims: (ctx, token) => {
    const user = users[token.accountId];
    const names = (config.access_token_claims || []).filter((name) => user && name in user);
    return names.length ? Object.fromEntries(names.map((name) => [name, user[name]])) : undefined;
  },
  // The provider refuses to call loopback addresses (its SSRF guard); the apps it calls back
  // (back-channel logout) run on this machine in tests, so the guard's dispatcher is dropped.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  findAccount: (ctx, id) => {
    const user = users[id];
    if (!user) return undefined;
    return { accountId: id, claims: () => ({ sub: id, ...user }) };
  },
  renderError: (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>oops</title><pre id="error">${JSON.stringify(out)}</pre>`;
  },
});

// oidc-provider accepts client_secret_basic and client_secret_post interchangeably; many
// companies' providers (Okta, for one) accept only the registered method. With
// strict_client_auth (the default here) the token endpoint refuses (invalid_client) a client
// registered for client_secret_post that authenticates with HTTP Basic.
if (config.strict_client_auth !== false) {
  const registered = Object.fromEntries(
    config.clients.map((c) => [c.client_id, c.token_endpoint_auth_method || 'client_secret_basic']),
  );
  provider.use(async (ctx, next) => {
    const header = ctx.get('authorization');
    if (ctx.method === 'POST' && ctx.path === '/token' && /^basic /i.test(header)) {
      const decoded = Buffer.from(header.slice(6), 'base64').toString();
      const clientId = decodeURIComponent(decoded.split(':')[0]);
      if (registered[clientId] === 'client_secret_post') {
        ctx.status = 401;
        ctx.body = {
          error: 'invalid_client',
          error_description: 'client authentication must use client_secret_post, not client_secret_basic',
        };
        return;
      }
    }
    await next();
  });
}

// Failed calls to the apps (back-channel logout) go to stderr: OIDCProvider.log() shows them.
for (const event of ['backchannel.error', 'server_error']) {
  provider.on(event, (...args) => {
    const error = args.find((arg) => arg instanceof Error);
    const cause = error?.cause?.code || error?.cause?.message || '';
    process.stderr.write(`${event}: ${error?.message || ''} ${cause}\n`);
  });
}

// The issuer may have a path (Keycloak's /realms/corp, Auth0's trailing /): the provider's
// routes are at the root of its router, so the path is taken off here, as a reverse proxy or a
// framework mount would (oidc-provider reads req.originalUrl to build its URLs).
const prefix = new URL(config.issuer).pathname.replace(/\/$/, '');
const handler = provider.callback();
const server = http.createServer((req, res) => {
  if (prefix) {
    if (!req.url.startsWith(`${prefix}/`) && req.url !== prefix) {
      res.writeHead(404).end('not under the issuer path');
      return;
    }
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length) || '/';
  }
  handler(req, res);
});
server.listen(config.port, config.host || '127.0.0.1', () => {
  process.stdout.write(`READY ${config.issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
