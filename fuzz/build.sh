#!/bin/sh
# Builds the libFuzzer targets with ASan and UBSan (Debian's clang) into build/fuzz/.
# Usage: fuzz/build.sh   (npm run fuzz builds first; see fuzz/run.js)
set -eu
cd "$(dirname "$0")/.."
CXX="${CXX_FUZZ:-clang++}"
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "fuzz/build.sh: $CXX not found (apt-get install clang)" >&2
  exit 2
fi
mkdir -p build/fuzz
FLAGS="-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Inative -DHERDLESS_NO_NAPI -DHERDLESS_LINUX=1"
$CXX $FLAGS fuzz/proxy_header.cc -o build/fuzz/proxy_header
$CXX $FLAGS fuzz/record.cc native/shared/channel.cc -o build/fuzz/record
echo "built build/fuzz/proxy_header build/fuzz/record"
