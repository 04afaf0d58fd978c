// A real OpenID Provider for the tests: node-oidc-provider (a certified OP), configured from
// deploy/keycloak/opsdash-realm.json so that the gateway and the dashboard meet what Keycloak gives them:
//
// - issuer  <base>/realms/<realm> and Keycloak's endpoint paths (/protocol/openid-connect/{auth,token,
//   certs,logout,userinfo,revoke}), so the gateway's default JWKS URL (issuer +
//   /protocol/openid-connect/certs) is right without configuration, as with Keycloak;
// - the realm's public client (authorization code + its PKCE method, refresh tokens) and its
//   confidential service-account clients (client credentials; secret "test-<client id>");
// - access tokens are JWTs (RS256) whose aud is the audience of the public client's audience-mapper
//   scope, with the realm roles in realm_access.roles, as Keycloak's "roles" scope puts them: the realm's
//   users and service accounts get their realmRoles; any other login name (e.g. "viewer") none but
//   default-roles-<realm>;
// - no consent screen (Keycloak's clients do not ask); logout (end_session) without a confirmation
//   page when the request carries id_token_hint, as Keycloak does.
//
//   node provider.mjs --port P --redirect http://127.0.0.1:G/ [--access-ttl S] [--realm-file F]
//
// Test controls (outside the realm path): POST /__test/rotate[?drop_old=1] makes a new signing key the
// active one (the old one stays published, like Keycloak's passive keys, unless drop_old); GET
// /__test/stats counts grants by type and end_session calls and lists the published key ids. One JSON
// line per event goes to stdout.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    redirect: { type: 'string', multiple: true },
    origin: { type: 'string', multiple: true },
    'access-ttl': { type: 'string' },
    'realm-file': {
      type: 'string',
      default: new URL('../../../deploy/keycloak/opsdash-realm.json', import.meta.url).pathname,
    },
  },
});

const realm = JSON.parse(fs.readFileSync(args['realm-file'], 'utf8'));
const browserClient = realm.clients.find((c) => c.publicClient && c.standardFlowEnabled);
const audienceMapper = realm.clientScopes
  .filter((sc) => (browserClient.defaultClientScopes ?? []).includes(sc.name))
  .flatMap((sc) => sc.protocolMappers ?? [])
  .find((m) => m.protocolMapper === 'oidc-audience-mapper' && m.config['access.token.claim'] === 'true');
const AUDIENCE = audienceMapper.config['included.client.audience'];
const PKCE = browserClient.attributes?.['pkce.code.challenge.method'] ?? 'S256';
const defaultRoles = `default-roles-${realm.realm}`;
const ROLES = Object.fromEntries(realm.users.filter((u) => !u.serviceAccountClientId)
  .map((u) => [u.username, u.realmRoles ?? [defaultRoles]]));
const CLIENT_ROLES = Object.fromEntries(realm.users.filter((u) => u.serviceAccountClientId)
  .map((u) => [u.serviceAccountClientId, u.realmRoles ?? [defaultRoles]]));
const serviceClients = realm.clients.filter((c) => c.serviceAccountsEnabled && !c.publicClient);

const port = Number(args.port);
const prefix = `/realms/${realm.realm}`;
const issuer = `http://127.0.0.1:${port}${prefix}`;
const accessTTL = Number(args['access-ttl'] ?? realm.accessTokenLifespan ?? 300);
const origins = new Set(args.origin ?? args.redirect.map((u) => new URL(u).origin));
const RESOURCE = `urn:opsdash:${AUDIENCE}`;

const stats = { grants: {}, end_sessions: 0, kids: [], errors: [] };
const log = (event) => process.stdout.write(`${JSON.stringify({ t: Date.now() / 1000, ...event })}\n`);

let keyNo = 0;
function newKey() {
  keyNo += 1;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `opsdash-key-${keyNo}`, alg: 'RS256', use: 'sig' };
}

// cookie keys stay the same across rotations: sessions and interactions survive a key change
const cookieKeys = [crypto.randomBytes(32).toString('hex')];
let keys = [newKey()];

function makeProvider() {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: browserClient.clientId,
      application_type: 'web',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: args.redirect,
      post_logout_redirect_uris: args.redirect,
    }, ...serviceClients.map((c) => ({
      client_id: c.clientId,
      client_secret: `test-${c.clientId}`,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }))],
    jwks: { keys },
    cookies: { keys: cookieKeys },
    routes: {
      authorization: '/protocol/openid-connect/auth',
      token: '/protocol/openid-connect/token',
      jwks: '/protocol/openid-connect/certs',
      end_session: '/protocol/openid-connect/logout',
      userinfo: '/protocol/openid-connect/userinfo',
      revocation: '/protocol/openid-connect/revoke',
      introspection: '/protocol/openid-connect/token/introspect',
    },
    pkce: { required: () => true, methods: [PKCE] },
    clientBasedCORS: (ctx, origin) => origins.has(origin),
    findAccount: (ctx, sub) => ({
      accountId: sub,
      claims: () => ({ sub, preferred_username: sub }),
    }),
    claims: { openid: ['sub'], profile: ['preferred_username'] },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // Keycloak ends the session at once for a request with id_token_hint: submit the form
        logoutSource: (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><head><title>Logging out</title></head><body>${form}
            <script>var f=document.forms[0];var i=document.createElement('input');i.type='hidden';
            i.name='logout';i.value='yes';f.appendChild(i);f.submit();</script></body></html>`;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource !== RESOURCE) throw new Provider.errors.InvalidTarget();
          return {
            scope: 'openid',
            audience: AUDIENCE,
            accessTokenTTL: accessTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // the realm roles, as Keycloak's "roles" client scope puts them into access tokens
    extraTokenClaims: (ctx, token) => {
      if (token.kind === 'AccessToken') {
        return { realm_access: { roles: ROLES[token.accountId] ?? [defaultRoles] }, azp: token.clientId };
      }
      if (token.kind === 'ClientCredentials') {
        return { realm_access: { roles: CLIENT_ROLES[token.clientId] ?? [defaultRoles] }, azp: token.clientId };
      }
      return undefined;
    },
    // a first-party client: no consent screen (Keycloak's clients do not ask either)
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found) return found;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile');
      grant.addResourceScope(RESOURCE, 'openid');
      await grant.save();
      return grant;
    },
    issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: accessTTL,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
      Interaction: 600,
    },
  });
  provider.proxy = false;
  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params.grant_type;
    stats.grants[type] = (stats.grants[type] ?? 0) + 1;
    log({ event: 'grant', grant_type: type, kid: keys[0].kid });
  });
  provider.on('end_session.success', () => {
    stats.end_sessions += 1;
    log({ event: 'end_session' });
  });
  for (const ev of ['grant.error', 'server_error', 'authorization.error', 'end_session.error']) {
    provider.on(ev, (ctx, err) => {
      stats.errors.push(`${ev}: ${err.message} ${err.error_description ?? ''}`);
      log({ event: ev, error: err.message, description: err.error_description });
    });
  }
  return provider;
}

let provider = makeProvider();
let handler = provider.callback();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/__test/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ...stats, kids: keys.map((k) => k.kid) }));
    return;
  }
  if (url.pathname === '/__test/rotate' && req.method === 'POST') {
    keys = url.searchParams.get('drop_old') ? [newKey()] : [newKey(), ...keys];
    provider = makeProvider();
    handler = provider.callback();
    log({ event: 'rotate', kids: keys.map((k) => k.kid) });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    return;
  }
  // the realm's endpoints live under /realms/<realm>; the interaction pages at /interaction/...
  req.originalUrl = req.url;
  if (req.url.startsWith(prefix)) req.url = req.url.slice(prefix.length) || '/';
  handler(req, res);
});

server.listen(port, '127.0.0.1', () => log({
  event: 'listening', issuer, client: browserClient.clientId, audience: AUDIENCE, services: serviceClients.map((c) => c.clientId),
  kids: keys.map((k) => k.kid),
}));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
