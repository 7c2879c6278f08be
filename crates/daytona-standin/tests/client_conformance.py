"""Daytona's own Python client (daytona-api-client, pinned) against the stand-in.

Every call below goes through the client's generated models, which validate each response
strictly; a response that drifts from Daytona's OpenAPI fails here.

Usage: python3 client_conformance.py BASE_URL MASTER_KEY ORGANIZATION_ID
"""

import sys

try:
    import daytona_api_client as d
except ImportError:
    sys.exit("daytona-api-client is not installed: pip install daytona-api-client==0.231.0")


def client(base, key):
    return d.ApiClient(d.Configuration(host=base, access_token=key))


def main():
    base, master, org = sys.argv[1:4]
    with client(base, master) as api:
        keys = d.ApiKeysApi(api)
        created = keys.create_api_key(
            d.CreateApiKey(name="conformance", permissions=["write:sandboxes", "delete:sandboxes"]),
            x_daytona_organization_id=org,
        )
        assert created.value.startswith("dtn_"), created.value
        assert created.name == "conformance"
        listed = keys.list_api_keys()
        assert any(k.name == "conformance" for k in listed), listed
        assert all("*" in k.value for k in listed), "list values are masked"
        current = keys.get_current_api_key()
        assert current.name == "master", current
        fetched = keys.get_api_key("conformance")
        assert fetched.permissions == ["write:sandboxes", "delete:sandboxes"], fetched
        try:
            keys.get_api_key("missing")
            raise AssertionError("a missing key must be 404")
        except d.ApiException as e:
            assert e.status == 404, e.status
        minted = created.value

    with client(base, minted) as api:
        sandboxes = d.SandboxApi(api)
        sandbox = sandboxes.create_sandbox(d.CreateSandbox(name="conformance-box", labels={"k": "v"}))
        assert sandbox.name == "conformance-box" and isinstance(sandbox.cpu, (int, float)), sandbox
        page = sandboxes.list_sandboxes()
        assert [s.name for s in page.items] == ["conformance-box"], page
        assert sandboxes.get_sandbox("conformance-box").id == sandbox.id
        sandboxes.delete_sandbox(sandbox.id)
        assert sandboxes.list_sandboxes().items == []

    with client(base, master) as api:
        d.ApiKeysApi(api).delete_api_key("conformance")
    with client(base, minted) as api:
        try:
            d.SandboxApi(api).list_sandboxes()
            raise AssertionError("a deleted key must be refused")
        except d.ApiException as e:
            assert e.status == 401, e.status
    print("conformance: ok")


if __name__ == "__main__":
    main()
