#!/usr/bin/env bash
# Installs, from Debian's packages, what the web UI (`plait ui`) and its browser tests need:
# Graphviz's `dot` (the UI draws workflow graphs with it server-side; without it the browser
# draws them, `plait ui --graphs`), a font for its labels, and Chromium (tests/ui drive it headless with Playwright; Playwright's own browser
# download is not used). Root only; does nothing when everything is there already.
set -euo pipefail

exec "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" graphviz fonts-dejavu-core chromium
