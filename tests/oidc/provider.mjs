// A real OIDC provider process for the identity tests, shaped like Keycloak: the issuer is
// http://127.0.0.1:<port>/realms/<realm> and its discovery document and JWKS live under it.
// oauth2-mock-server serves the OIDC endpoints; /control/* lets a test mint tokens with the
// claims it wants and rotate the signing key. Loopback only.
//
//   node tests/oidc/provider.mjs --port 0 [--realm stratmaster]
//
// Prints one JSON line {"issuer": ..., "port": ..., "kid": ...} once it is listening.
import http from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1] : fallback;
}

const realm = option('realm', 'stratmaster');
const port = Number(option('port', '0'));
const prefix = `/realms/${realm}`;

const issuer = new OAuth2Issuer();
let currentKid = (await issuer.keys.generate('RS256', { kid: 'key-1' })).kid;
const service = new OAuth2Service(issuer);
const oidc = service.requestHandler;

function readJson(request) {
  return new Promise((resolve, reject) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      try { resolve(body ? JSON.parse(body) : {}); } catch (error) { reject(error); }
    });
  });
}

function reply(response, status, value) {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(value));
}

async function control(request, response, path) {
  const body = await readJson(request);
  if (path === '/control/token') {
    // body: {claims: {...}, expires_in: seconds (negative: already expired), kid: optional}
    const token = await issuer.buildToken({
      kid: body.kid ?? currentKid,
      expiresIn: body.expires_in ?? 300,
      scopesOrTransform: (header, payload) => { Object.assign(payload, body.claims ?? {}); },
    });
    return reply(response, 200, { token });
  }
  if (path === '/control/rotate') {
    // A new signing key; the old one stays published (as Keycloak keeps passive keys).
    currentKid = (await issuer.keys.generate(body.alg ?? 'RS256', { kid: body.kid })).kid;
    return reply(response, 200, { kid: currentKid });
  }
  return reply(response, 404, { error: `no control route ${path}` });
}

const server = http.createServer((request, response) => {
  const path = new URL(request.url, 'http://127.0.0.1').pathname;
  if (request.method === 'POST' && path.startsWith('/control/')) {
    control(request, response, path).catch((error) => reply(response, 500, { error: String(error) }));
    return;
  }
  if (path === prefix || path.startsWith(`${prefix}/`)) {
    request.url = request.url.slice(prefix.length) || '/';
    oidc(request, response);
    return;
  }
  reply(response, 404, { error: `not under ${prefix}` });
});

server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  issuer.url = `http://127.0.0.1:${bound}${prefix}`;
  process.stdout.write(`${JSON.stringify({ issuer: issuer.url, port: bound, kid: currentKid })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
