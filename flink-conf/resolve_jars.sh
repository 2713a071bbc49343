#!/usr/bin/env bash
# Copy the connector jars named in connectors.txt (and their runtime dependencies) into a cache dir.
# Usage: flink-conf/resolve_jars.sh [CACHE_DIR]   (default: ${COMMODEX_CACHE_DIR:-~/.cache/commodex}/flink-jars)
# Idempotent: a stamp holding the coordinates' checksum skips the resolve when nothing changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="$here/connectors.txt"
cache="${1:-${COMMODEX_CACHE_DIR:-$HOME/.cache/commodex}/flink-jars}"
mkdir -p "$cache"
sum="$(grep -v '^\s*#' "$list" | grep -v '^\s*$' | sha256sum | cut -d' ' -f1)"
if [[ -f "$cache/.stamp" && "$(cat "$cache/.stamp")" == "$sum" ]]; then
  echo "$cache"; exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
  echo '<groupId>commodex.flink</groupId><artifactId>flink-jars</artifactId><version>1</version>'
  echo '<packaging>pom</packaging><dependencies>'
  grep -v '^\s*#' "$list" | grep -v '^\s*$' | while IFS=: read -r g a v; do
    echo "<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
  done
  echo '</dependencies></project>'
} > "$work/pom.xml"
# Flink itself (flink-dist, table planner) comes with the apache-flink wheel: exclude it from the copy.
mvn -q -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -DexcludeGroupIds=org.apache.flink.shaded -DexcludeArtifactIds=flink-core,flink-streaming-java,flink-table-common \
  -DoutputDirectory="$cache" >&2
echo "$sum" > "$cache/.stamp"
echo "$cache"
