#!/usr/bin/env bash
# The action's second step: `creddy get` with the job's OIDC token (CREDDY_OIDC=github-actions;
# creddy registers every secret with the runner's log masking before printing it). The
# credential's environment variables (the plugin's names, e.g. DAYTONA_API_KEY) are exported
# to the later steps through $GITHUB_ENV.
set -euo pipefail

: "${CREDDY_BACKEND:?set the backend}"
: "${GITHUB_ENV:?not running under GitHub Actions (GITHUB_ENV is unset)}"

args=(get "$CREDDY_BACKEND" --ttl "${CREDDY_TTL:-30m}" -o env)
for scope in ${CREDDY_SCOPE:-}; do
  args+=(--scope "$scope")
done
lines="$(creddy "${args[@]}")"

while IFS= read -r line; do
  [ -n "$line" ] || continue
  name="${line%%=*}"
  value="${line#*=}"
  if ! [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "::error::creddy printed an invalid variable name" >&2
    exit 1
  fi
  # The multi-line form with a random delimiter: a value can never end the entry early.
  delimiter="creddy_$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  printf '%s<<%s\n%s\n%s\n' "$name" "$delimiter" "$value" "$delimiter" >> "$GITHUB_ENV"
done <<< "$lines"
echo "creddy: $CREDDY_BACKEND credential exported for the next steps" >&2
