#!/usr/bin/env bash
# The action's first step: installs creddy $CREDDY_VERSION for this runner from
# $CREDDY_RELEASE_URL/v$CREDDY_VERSION/ (an https:// URL, or file:// for a mirror on disk),
# checks the archive against the release's SHA256SUMS, unpacks it under $RUNNER_TEMP and
# adds its bin directory to $GITHUB_PATH.
set -euo pipefail

: "${CREDDY_VERSION:?set the version to install}"
: "${CREDDY_RELEASE_URL:?set the release URL}"
: "${RUNNER_TEMP:?not running under GitHub Actions (RUNNER_TEMP is unset)}"
: "${GITHUB_PATH:?not running under GitHub Actions (GITHUB_PATH is unset)}"

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=macos ;;
  *) echo "::error::creddy has no release for $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "::error::creddy has no release for $(uname -m)" >&2; exit 1 ;;
esac

archive="creddy-${CREDDY_VERSION}-${os}-${arch}.tar.gz"
base="${CREDDY_RELEASE_URL%/}/v${CREDDY_VERSION}"
dir="$RUNNER_TEMP/creddy-${CREDDY_VERSION}"
mkdir -p "$dir"

fetch() { # fetch NAME: downloads $base/NAME into $dir
  case "$base" in
    file://*) cp "${base#file://}/$1" "$dir/$1" ;;
    https://*) curl --fail --silent --show-error --location --proto '=https' --max-time 120 \
        --output "$dir/$1" "$base/$1" ;;
    *) echo "::error::the release URL must be https:// (or file:// for a local mirror): $base" >&2; exit 1 ;;
  esac
}

fetch "$archive"
fetch SHA256SUMS
expected="$(awk -v name="$archive" '$2 == name || $2 == "*" name { print $1 }' "$dir/SHA256SUMS")"
if [ -z "$expected" ]; then
  echo "::error::SHA256SUMS of v${CREDDY_VERSION} has no line for $archive" >&2
  exit 1
fi
actual="$(sha256sum "$dir/$archive" | awk '{ print $1 }')"
if [ "$expected" != "$actual" ]; then
  echo "::error::$archive does not match the release's SHA256SUMS (expected $expected, got $actual)" >&2
  exit 1
fi
tar -xzf "$dir/$archive" -C "$dir"
bin="$dir/creddy-${CREDDY_VERSION}/bin"
"$bin/creddy" --version >&2
echo "$bin" >> "$GITHUB_PATH"
