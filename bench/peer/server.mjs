// The benchmark's peer (cargo xtask bench): Node's oidc-provider configured like creddy's token
// endpoint for the comparison: the client credentials grant, HTTP Basic client authentication,
// EdDSA-signed JWT access tokens. Usage: node server.mjs SECRET_FILE; it prints
// `listening http://127.0.0.1:PORT` once it accepts connections.
import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const secret = readFileSync(process.argv[2], 'utf8').trim();
const { privateKey } = generateKeyPairSync('ed25519');
const key = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'EdDSA' };

const provider = new Provider('http://127.0.0.1', {
  clients: [{
    client_id: 'bench',
    client_secret: secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'EdDSA',
  }],
  jwks: { keys: [key] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:creddy:bench',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'daytona',
        audience: 'urn:creddy:bench',
        accessTokenTTL: 3600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'EdDSA' } },
      }),
    },
  },
});

const server = provider.listen(0, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
