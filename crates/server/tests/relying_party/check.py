"""A relying party nobody on the team wrote: PyJWT reads creddy's discovery document, fetches
its JWKS, obtains an access token with client_secret_basic, and verifies it (signature, alg,
issuer, audience, expiry). Given an earlier token, it reports whether that one still verifies
against the keys published now; with client id "-" it only does that. Prints one JSON object."""

import base64
import json
import sys
import urllib.request

import jwt

issuer, client_id, client_secret = sys.argv[1:4]
earlier = sys.argv[4] if len(sys.argv) > 4 else None

discovery = json.load(urllib.request.urlopen(issuer + "/.well-known/openid-configuration"))
assert discovery["issuer"] == issuer, discovery
jwks = json.load(urllib.request.urlopen(discovery["jwks_uri"]))

result = {
    "kids": [k["kid"] for k in jwks["keys"]],
    "algs": sorted({k["alg"] for k in jwks["keys"]}),
}


def verify(token):
    header = jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=[key["alg"]],
        audience=issuer,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )


if client_id != "-":
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    request = urllib.request.Request(
        discovery["token_endpoint"],
        data=b"grant_type=client_credentials",
        headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"},
    )
    issued = json.load(urllib.request.urlopen(request))
    claims = verify(issued["access_token"])
    result["access_token"] = issued["access_token"]
    result["typ"] = jwt.get_unverified_header(issued["access_token"])["typ"]
    result["sub"] = claims["sub"]
    result["agent_name"] = claims["agent_name"]
    result["scope"] = claims["scope"]
    id_header = jwt.get_unverified_header(issued["id_token"])
    id_key = next(k for k in jwks["keys"] if k["kid"] == id_header["kid"])
    result["id_token_sub"] = jwt.decode(
        issued["id_token"], jwt.PyJWK(id_key).key, algorithms=[id_key["alg"]], audience=issuer, issuer=issuer
    )["sub"]
if earlier:
    try:
        verify(earlier)
        result["earlier_ok"] = True
    except Exception as e:  # a retired key is simply gone from the JWKS
        result["earlier_ok"] = False
        result["earlier_error"] = type(e).__name__
print(json.dumps(result))
