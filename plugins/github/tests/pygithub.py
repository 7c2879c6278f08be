"""PyGithub, a GitHub client nobody on the team wrote, against the GitHub stand-in: it
authenticates as the App, finds the installation, mints a narrowed installation token and
uses it on repository contents. Prints what it saw as JSON for the Rust test to check.

usage: pygithub.py BASE_URL APP_ID KEY_FILE
"""

import json
import sys

from github import Auth, Github, GithubException, GithubIntegration

url, app_id, key_file = sys.argv[1:4]
with open(key_file, encoding="ascii") as f:
    key = f.read()
quick = {"seconds_between_requests": 0, "seconds_between_writes": 0}

integration = GithubIntegration(auth=Auth.AppAuth(int(app_id), key), base_url=url, **quick)
app = integration.get_app()
installation = integration.get_repo_installation("acme", "widgets")
granted = integration.get_access_token(
    installation.id, permissions={"contents": "write", "metadata": "read"}
)

client = Github(auth=Auth.Token(granted.token), base_url=url, **quick)
repo = client.get_repo("acme/widgets")
readme = repo.get_contents("README.md").decoded_content.decode()
created = repo.create_file("from-pygithub.txt", "add a file", "written by PyGithub\n")
updated = repo.update_file("from-pygithub.txt", "update it", "again\n", created["content"].sha)
try:
    client.get_repo("acme/vault").get_contents("secret.txt")
    vault = "read"
except GithubException as refused:
    vault = refused.status

print(json.dumps({
    "app": app.slug,
    "installation": installation.id,
    "token": granted.token,
    "expires_at": granted.expires_at.isoformat(),
    "repository": repo.full_name,
    "readme": readme,
    "sha": updated["content"].sha,
    "vault": vault,
}))
