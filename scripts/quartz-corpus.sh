#!/bin/sh
# Regenerates tests/data/quartz/corpus.tsv: for every case in tests/data/quartz/cases.tsv
# (expression, zone, reference epoch ms), the next five fire times Quartz 2.3 gives.
# Needs Java 11+ and Quartz (Debian: apt-get install libquartz2-java). The tests only read the
# committed corpus and do not need Java.
set -eu
cd "$(dirname "$0")/.."
JAR="${QUARTZ_JAR:-/usr/share/java/quartz2.jar}"
[ -f "$JAR" ] || { echo "Quartz jar not found at $JAR (set QUARTZ_JAR)" >&2; exit 1; }
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
java -cp "$JAR" scripts/QuartzCorpus.java < tests/data/quartz/cases.tsv > "$tmp"
chmod 644 "$tmp"
mv "$tmp" tests/data/quartz/corpus.tsv
trap - EXIT
echo "wrote tests/data/quartz/corpus.tsv ($(grep -vc '^#' tests/data/quartz/corpus.tsv) cases)"
