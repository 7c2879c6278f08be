"""A workload identity token nobody on the team wrote: PyJWT (with `cryptography`) makes an
RSA key, writes its public half as a JWKS file, and signs a GitHub-shaped token with it.

usage: mint.py ISSUER JWKS_FILE NOW    prints the token"""

import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

issuer, jwks_file, now = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "pyjwt-1", "use": "sig", "alg": "RS256"})
with open(jwks_file, "w") as out:
    json.dump({"keys": [jwk]}, out)
claims = {
    "iss": issuer,
    "aud": "creddy",
    "sub": "repo:acme/widgets:ref:refs/heads/main",
    "repository": "acme/widgets",
    "ref": "refs/heads/main",
    "iat": now,
    "nbf": now,
    "exp": now + 300,
}
print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "pyjwt-1"}))
