#!/usr/bin/env bash
# Builds the REAL reservation system this project receives webhooks from (reservation-be and
# reservation-event-processor 0.1.18 and 0.1.15; Java 17, Spring Boot, Debian's maven) for the
# reservation tier (tests/reservation-harness), into a cache outside the repository:
#   ${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/reservation/<hash>/
#       reservation-be.jar  reservation-event-processor-0.1.18.jar  reservation-event-processor-0.1.15.jar
# <hash> covers every source file of the three trees, the Java 17 fix below, the Maven flags and
# this script's BUILD_VERSION, so a changed source or flag builds again and anything else is a
# cache hit: a second run returns at once (a second or two to hash the sources). Maven's
# downloads go to a private local repository beside it (reservation/m2, -Dmaven.repo.local),
# reused by every later build; ~/.m2 is not touched.
#
# Where the sources come from (no package registry serves them):
#   RESERVATION_SRC, when set, else <repo root>/../shared/third_party (the copy provided beside
#   this project; like BMO_SRC, the ONE use of ../shared), holding reservation-be/,
#   reservation-event-processor/ (0.1.18) and reservation-event-processor-0.1.15/.
# The trees are read, never written: they are copied into the cache and built there.
#
# The one source change (the poms ask for Java 23; this machine has OpenJDK 17): in
# reservation-be's RequestLoggingFilter, `jwtAuth.getToken() instanceof Jwt jwt` (a pattern of
# the expression's own type, legal from Java 21 only) becomes a null check plus a local.
#
# Prints on stdout, for `eval`-style use by tools/bootstrap.sh and the test harness:
#   RESERVATION_SRC=<absolute source dir>
#   RESERVATION_BE_JAR=<jar>  RESERVATION_EP_JAR=<0.1.18 jar>  RESERVATION_EP_0115_JAR=<0.1.15 jar>
# Logs go to stderr. When no source, no Java 17+ or no Maven can be had it prints a LOUD message
# and empty values (the tier is then skipped), except under CI=true, where it exits 1. A failed
# build always exits 1.
set -euo pipefail

BUILD_VERSION=1
MVN_FLAGS=(-B -q -Dstyle.color=never -DskipTests -Djava.version=17 -Ppro-postgres package)
FIX_FILE=src/main/java/it/polito/cloudresources/be/config/log/RequestLoggingFilter.java
FIX_FROM='jwtAuth.getToken() instanceof Jwt jwt) {'
FIX_TO='jwtAuth.getToken() != null) { Jwt jwt = jwtAuth.getToken();'
# tree name in RESERVATION_SRC -> jar name in the cache
TREES=(reservation-be reservation-event-processor reservation-event-processor-0.1.15)
JARS=(reservation-be.jar reservation-event-processor-0.1.18.jar reservation-event-processor-0.1.15.jar)

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TOOLS_CACHE:-$HOME/.cache/bmh-webhook}/reservation
log() { echo "build-reservation: $*" >&2; }

unavailable() {
  {
    echo
    echo "################################################################################"
    echo "## build-reservation: the real reservation system is NOT available:"
    echo "##   $1"
    echo "## The reservation tier (tests/reservation-harness: reservation-be and"
    echo "## reservation-event-processor against the filter and the sidecar) will be SKIPPED."
    echo "## Set RESERVATION_SRC to a folder holding ${TREES[*]}."
    echo "################################################################################"
    echo
  } >&2
  if [ "${CI:-}" = true ]; then
    echo "build-reservation: CI=true: a missing reservation system fails the run" >&2
    exit 1
  fi
  echo "RESERVATION_SRC="
  echo "RESERVATION_BE_JAR="
  echo "RESERVATION_EP_JAR="
  echo "RESERVATION_EP_0115_JAR="
  exit 0
}

# 1. The sources.
src=${RESERVATION_SRC:-$root/../shared/third_party}
[ -d "$src" ] || unavailable "no source folder $src (set RESERVATION_SRC)"
src=$(cd "$src" && pwd -P)
for t in "${TREES[@]}"; do
  [ -f "$src/$t/pom.xml" ] && [ -d "$src/$t/src/main/java" ] ||
    unavailable "$src/$t holds no Maven project (pom.xml, src/main/java)"
done
grep -qF "$FIX_FROM" "$src/reservation-be/$FIX_FILE" ||
  unavailable "$src/reservation-be/$FIX_FILE does not hold the line the Java 17 fix rewrites (another reservation-be version?)"

# 2. The cache key.
hash=$(
  {
    for t in "${TREES[@]}"; do
      (cd "$src/$t" && find . -type f ! -path './target/*' ! -path './.git/*' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sed "s|  \./|  $t/|")
    done
    printf '%s\n' "$BUILD_VERSION" "$FIX_FILE" "$FIX_FROM" "$FIX_TO" "${MVN_FLAGS[*]}"
  } | sha256sum | cut -c1-16
)
out=$cache/$hash
print_paths() {
  echo "RESERVATION_SRC=$src"
  echo "RESERVATION_BE_JAR=$out/${JARS[0]}"
  echo "RESERVATION_EP_JAR=$out/${JARS[1]}"
  echo "RESERVATION_EP_0115_JAR=$out/${JARS[2]}"
}
all_built() { for j in "${JARS[@]}"; do [ -s "$out/$j" ] || return 1; done; }
if all_built; then
  print_paths
  exit 0
fi

# 3. Build (first run for this key only).
command -v java >/dev/null || unavailable "java is not installed (Debian: openjdk-17-jdk-headless)"
command -v mvn >/dev/null || unavailable "mvn is not installed (Debian: maven)"
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || unavailable "java is version ${java_major:-unknown}; 17 or later is needed"
command -v javac >/dev/null || unavailable "javac is not installed (a JDK, not only a JRE, is needed)"

mkdir -p "$out" "$cache/m2"
exec 9>"$out/.lock"
flock 9 2>/dev/null || true # another build of the same key finishes first
if all_built; then
  print_paths
  exit 0
fi
start=$(date +%s)
log "building ${TREES[*]} from $src into $out (first run for these sources; ~5 min cold, ~1 min per jar with Maven's downloads cached)"
work=$out/src
rm -rf "$work"
mkdir -p "$work"
for i in "${!TREES[@]}"; do
  t=${TREES[$i]}
  t0=$(date +%s)
  cp -a "$src/$t" "$work/$t"
  rm -rf "$work/$t/target"
  if [ "$t" = reservation-be ]; then
    # A literal replacement (no regex), of exactly the text the cache key holds.
    java_src=$(<"$work/$t/$FIX_FILE")
    printf '%s\n' "${java_src//"$FIX_FROM"/"$FIX_TO"}" >"$work/$t/$FIX_FILE"
    grep -qF "$FIX_TO" "$work/$t/$FIX_FILE" || { log "the Java 17 fix did not apply to $FIX_FILE"; exit 1; }
  fi
  # (Debian's mvn prints colour resets even in batch mode: stripped from the log.)
  (cd "$work/$t" && mvn "${MVN_FLAGS[@]}" -Dmaven.repo.local="$cache/m2" 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g') >&2 ||
    { log "mvn package of $t failed (output above)"; exit 1; }
  jar=$(find "$work/$t/target" -maxdepth 1 -name '*.jar' ! -name '*-plain.jar' | head -n 1)
  [ -n "$jar" ] || { log "mvn package of $t left no jar in target/"; exit 1; }
  cp "$jar" "$out/${JARS[$i]}.tmp"
  mv "$out/${JARS[$i]}.tmp" "$out/${JARS[$i]}"
  log "$t: $(($(date +%s) - t0)) s -> $out/${JARS[$i]}"
done
rm -rf "$work"
echo "$src" >"$out/source"
log "built in $(($(date +%s) - start)) s"
print_paths
