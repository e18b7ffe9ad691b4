#!/usr/bin/env bash
# Vendors the chat page's browser libraries from npm into src/pts/web/vendor/.
#
# Pinned versions, each tarball checked against its pinned integrity hash, the files copied
# unchanged (only renamed to .js, which every server serves as JavaScript) with the package's
# licenses beside them. The app serves the committed copies (`GET /static/vendor/...`, also in
# the Lambda layer, which is this package's wheel); nothing is fetched at run time. Run this by
# hand to bump a version: change the pin and hash below, run, review the diff, commit.
#
#   marked     Markdown → HTML, GitHub-flavoured (lists, tables, fenced code)
#   dompurify  sanitizes that HTML: a reply can never run script in the page
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=src/pts/web/vendor

# name  version  integrity  file-in-package:name-in-vendor...
PACKAGES=(
  "marked 18.2.1 sha512-ii4bxCTCqqwpT86XZWgJNs+ZnAIZksmLGYMViWA7PDIXYIeNo1x6cDdX3JOip9NM/cI6p8z57FxliACboTruMA== lib/marked.esm.js:marked.esm.js LICENSE:LICENSE"
  "dompurify 3.5.0 sha512-LYC0ZkE8P1V42JsRYTwMdme/2ET8SpOc5AA2eOFjP/IadvRd2fwiT4TVz5vkfy0XUx12aS2UaRkTnfVPNOv9vw== dist/purify.es.mjs:purify.es.js LICENSE:LICENSE LICENSE-MPL:LICENSE-MPL"
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -rf "$DEST"
mkdir -p "$DEST"
{
  echo "Vendored by scripts/vendor-web.sh from npm; do not edit (run the script to update)."
  echo
} >"$DEST/VERSIONS"

for entry in "${PACKAGES[@]}"; do
  read -r name version integrity files <<<"$entry"
  # npm verifies the download against the registry's hash; we check it against ours too.
  got=$(cd "$work" && npm pack --silent --json "$name@$version" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["integrity"])')
  if [ "$got" != "$integrity" ]; then
    echo "vendor-web: $name@$version has integrity $got, expected $integrity" >&2
    exit 1
  fi
  mkdir -p "$work/$name" "$DEST/$name"
  tar -xzf "$work/$name-$version.tgz" -C "$work/$name"
  for pair in $files; do
    cp "$work/$name/package/${pair%%:*}" "$DEST/$name/${pair#*:}"
  done
  license=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["license"])' \
    "$work/$name/package/package.json")
  echo "$name $version, license $license, $integrity" >>"$DEST/VERSIONS"
done

echo "vendor-web: $(find "$DEST" -type f | wc -l) files in $DEST"
