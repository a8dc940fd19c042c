#!/bin/bash
# npm run test:asan [-- test files]: the addon built with AddressSanitizer in .asan/ (apart from
# build/, which stays the normal build), then the fault tests (default test/faults/*.test.js)
# with it, in the primary and in every worker (HERDLESS_ADDON and LD_PRELOAD are inherited).
# Node itself is not instrumented, so libasan is preloaded; leaks are not checked (Node does
# not free everything at exit). Any ASan report fails the run. See docs/testing-sanitizers.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.asan"
mkdir -p "$out"
rm -rf "$out/native" "$out"/asan.*
cp "$root/binding.gyp" "$out/"
cp -r "$root/native" "$out/native"
ln -sfn "$root/node_modules" "$out/node_modules"
echo "test:asan: building the addon with -fsanitize=address in $out" >&2
(cd "$out" && CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address" \
  npx node-gyp rebuild -j 2 >"$out/build.log" 2>&1) || { tail -30 "$out/build.log" >&2; exit 1; }
libasan=$(gcc -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "test:asan: libasan not found (apt-get install gcc)" >&2; exit 1; }
export HERDLESS_ADDON="$out/build/Release/herdless.node"
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0:halt_on_error=1:log_path=$out/asan"
if [ $# -eq 0 ]; then set -- "$root"/test/faults/*.test.js; fi
status=0
(cd "$root" && npx mocha --no-config --exit --timeout 120000 "$@") || status=$?
unset LD_PRELOAD
if ls "$out"/asan.* >/dev/null 2>&1; then
  echo "test:asan: AddressSanitizer reports:" >&2
  cat "$out"/asan.* >&2
  exit 1
fi
echo "test:asan: no AddressSanitizer report (mocha exit $status)" >&2
exit "$status"
