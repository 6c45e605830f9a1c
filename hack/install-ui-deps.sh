#!/usr/bin/env bash
# Installs, from Debian's packages, what the web UI (`plait ui`) and its browser tests need:
# Graphviz's `dot` (the UI lays out workflow graphs with it, server-side, as SVG), a font for its
# labels, and Chromium (tests/ui drive it headless with Playwright; Playwright's own browser
# download is not used). Root only; does nothing when everything is there already.
set -euo pipefail

packages=(graphviz fonts-dejavu-core chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "error: ${missing[*]} are missing and installing them needs root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
