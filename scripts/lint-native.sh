#!/usr/bin/env bash
# The native half of `npm run lint`: clang-format --dry-run --Werror on the files listed in
# .clang-format-files (those already formatted; see CONTRIBUTING.md, Lint).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null 2>&1; then
  echo "lint: clang-format not found: sudo apt-get install clang-format" >&2
  exit 1
fi
mapfile -t files < <(grep -v -e '^#' -e '^$' .clang-format-files)
for f in "${files[@]}"; do [ -f "$f" ] || { echo "lint: $f is in .clang-format-files but does not exist" >&2; exit 1; }; done
clang-format --dry-run --Werror "${files[@]}"
