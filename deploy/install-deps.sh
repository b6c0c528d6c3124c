#!/usr/bin/env bash
# Installs everything blockhub needs to build, test and run against a real
# Kafka broker. Idempotent and fast when everything is already present: it is
# run at the start of every test run.
#
#   deploy/install-deps.sh            # everything: apt, librdkafka, Kafka
#                                     # jars, Python venv, schema registry
#   deploy/install-deps.sh apt        # only the Debian packages
#   deploy/install-deps.sh rdkafka    # only librdkafka 2.8.0, built from
#                                     # Debian's source package into
#                                     # $BLOCKHUB_CACHE/librdkafka-2.8.0
#                                     # (blockhub links it, not Debian 12's
#                                     # librdkafka 2.0.2: see bh_rdkafka_ensure)
#   deploy/install-deps.sh kafka      # only the Kafka broker jars
#   deploy/install-deps.sh venv       # only the Python virtualenv
#   deploy/install-deps.sh registry   # only the schema registry: Apicurio
#                                     # Registry's distribution (Confluent-
#                                     # compatible API) from Maven Central,
#                                     # run by deploy/registry/local-registry
#                                     # (it needs Java 21+ to run)
#
# It can also be sourced (deploy/kafka/local-kafka and
# deploy/registry/local-registry do) for its bh_* functions; sourcing runs
# nothing.
#
# Environment:
#   BLOCKHUB_CACHE          cache root (default: $HOME/.cache/blockhub)
#   BLOCKHUB_KAFKA_VERSION  org.apache.kafka:kafka_2.13 version (default 4.1.1)
#   BLOCKHUB_REGISTRY_VERSION  io.apicurio:apicurio-registry-app version
#                           (default 3.3.3)
#   BLOCKHUB_REGISTRY_JAVA  java binary (21+) for the registry (default: the
#                           first java 21+ of PATH, JAVA_HOME, /usr/lib/jvm)
#   BLOCKHUB_PYTHON         interpreter for the venv (default: /usr/bin/python3
#                           if present, else python3 on PATH)
#   BLOCKHUB_SKIP_APT=1     never look at / install Debian packages
#   BLOCKHUB_RDKAFKA_TARBALL  a local copy of librdkafka_2.8.0.orig.tar.gz to
#                           build from instead of downloading it (its sha256
#                           is checked all the same)
#
# Progress goes to stderr; the last line on stdout says where the cache is.

set -euo pipefail

BH_DEPLOY_DIR="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd -P)"
BH_CACHE="${BLOCKHUB_CACHE:-${HOME:?HOME is not set and BLOCKHUB_CACHE is not given}/.cache/blockhub}"
BH_KAFKA_VERSION="${BLOCKHUB_KAFKA_VERSION:-4.1.1}"
BH_KAFKA_POM="$BH_DEPLOY_DIR/kafka/pom.xml"
BH_REGISTRY_VERSION="${BLOCKHUB_REGISTRY_VERSION:-3.3.3}"
BH_REGISTRY_POM="$BH_DEPLOY_DIR/registry/pom.xml"
BH_REQUIREMENTS="$BH_DEPLOY_DIR/requirements.txt"
BH_VENV="$BH_CACHE/venv"
# librdkafka: Debian trixie's source package of 2.8.0 (the upstream tarball,
# byte for byte), checked against this sha256.
BH_RDKAFKA_VERSION=2.8.0
BH_RDKAFKA_URL="http://deb.debian.org/debian/pool/main/libr/librdkafka/librdkafka_${BH_RDKAFKA_VERSION}.orig.tar.gz"
BH_RDKAFKA_SHA256=5bd1c46f63265f31c6bfcedcde78703f77d28238eadf23821c2b43fc30be3e25
# Its features: TLS, SASL (SCRAM and OAUTHBEARER built in; GSSAPI through
# Cyrus SASL), the compression codecs, and libcurl (OIDC token fetch).
BH_RDKAFKA_CONFIGURE=(
  --no-download --enable-ssl --enable-gssapi --enable-zstd --enable-lz4-ext
  --enable-zlib --enable-curl --disable-syslog --disable-valgrind
)
# The Debian packages its build needs (the -dev packages of those features).
BH_RDKAFKA_BUILD_PACKAGES=(
  build-essential pkg-config curl
  libssl-dev libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev libcurl4-openssl-dev
)

BH_APT_PACKAGES=(
  build-essential cmake pkg-config
  # librdkafka is built from source (part "rdkafka"): these are its build deps
  libsasl2-dev libzstd-dev liblz4-dev zlib1g-dev
  libavro-dev libuv1-dev libh2o-dev libssl-dev
  libyaml-dev libjansson-dev libyajl-dev libgeos-dev libcmocka-dev
  libcurl4-openssl-dev   # the schema registry client (hub/registry.c)
  libmimalloc-dev   # the allocator of the daemon (CMakeLists.txt BH_MIMALLOC)
  librocksdb-dev   # the join's local state store (join.state_store: disk)
  clang-format kcat curl jq
  openssl   # test CAs: local-kafka --secure, the registry TLS test
  nghttp2-client   # h2load: bench/run-fire.sh checks its own load generator against it
  systemd   # systemd-analyze: the suite checks deploy/systemd/blockhub.service
  tmux      # the suite runs blockhubctl top in a real terminal
  clang libclang-rt-14-dev llvm   # fuzz build: clang, libFuzzer/ASan runtimes, llvm-symbolizer
  openjdk-17-jre-headless maven
  python3 python3-venv
)

bh_log() { printf 'install-deps: %s\n' "$*" >&2; }
bh_die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# Runs "$@" as root (directly, or through sudo).
bh_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" || bh_die "need root for: $* (sudo -n failed; run as root or install the packages by hand)"
  else
    bh_die "need root for: $* (not root and no sudo)"
  fi
}

# bh_apt_ensure PKG...: installs the Debian packages that are not installed.
# openjdk-17-jre-headless and maven are skipped when `java` / `mvn` exist.
bh_apt_ensure() {
  [[ "${BLOCKHUB_SKIP_APT:-0}" == 1 ]] && return 0
  local pkg missing=()
  for pkg in "$@"; do
    case "$pkg" in
      openjdk-*-jre-headless|openjdk-*-jdk*) command -v java >/dev/null 2>&1 && continue ;;
      maven) command -v mvn >/dev/null 2>&1 && continue ;;
    esac
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" != installed ]]; then
      missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 || bh_die "missing packages (${missing[*]}) and no apt-get on this machine"
  bh_log "installing Debian packages: ${missing[*]}"
  bh_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
    || bh_die "apt-get update failed"
  bh_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || bh_die "apt-get install failed for: ${missing[*]}"
}

# Directory holding the broker's jars for the configured version.
bh_kafka_home() { printf '%s/kafka-%s\n' "$BH_CACHE" "$BH_KAFKA_VERSION"; }

# What the marker must contain for the cached jars to be current: the
# version and the pom that produced them (editing the pom refetches).
bh_kafka_stamp() {
  printf 'kafka %s\npom %s\n' "$BH_KAFKA_VERSION" "$(sha256sum <"$BH_KAFKA_POM" | cut -d' ' -f1)"
}

bh_kafka_present() {
  local home; home="$(bh_kafka_home)"
  [[ -f "$home/.complete" && -d "$home/libs" ]] && [[ "$(cat "$home/.complete")" == "$(bh_kafka_stamp)" ]]
}

# bh_kafka_ensure: makes sure $(bh_kafka_home)/libs holds the broker, its
# runtime dependencies and the log4j2 backend. Safe to run concurrently.
bh_kafka_ensure() {
  bh_kafka_present && return 0
  [[ -f "$BH_KAFKA_POM" ]] || bh_die "missing $BH_KAFKA_POM"
  command -v java >/dev/null 2>&1 || bh_apt_ensure openjdk-17-jre-headless
  command -v mvn >/dev/null 2>&1 || bh_apt_ensure maven
  command -v mvn >/dev/null 2>&1 || bh_die "mvn not found (install maven)"
  local home; home="$(bh_kafka_home)"
  mkdir -p "$home"
  (
    flock -w 600 9 || bh_die "timed out waiting for the lock on $home/.lock"
    bh_kafka_present && exit 0           # another process fetched it meanwhile
    local tmp="$home/libs.tmp.$$"
    rm -rf "$tmp"
    bh_log "fetching Apache Kafka $BH_KAFKA_VERSION jars with Maven into $home/libs"
    # (Maven 3.8's -q still prints bare ANSI resets: strip them.)
    if ! mvn -q -B -Dstyle.color=never -f "$BH_KAFKA_POM" \
          dependency:copy-dependencies \
          -Dkafka.version="$BH_KAFKA_VERSION" -DoutputDirectory="$tmp" 2>&1 \
        | sed -u 's/\x1b\[[0-9;]*m//g' | { grep -v '^$' >&2 || true; }; then
      rm -rf "$tmp"
      bh_die "Maven could not fetch org.apache.kafka:kafka_2.13:$BH_KAFKA_VERSION (see above)"
    fi
    ls "$tmp"/kafka_2.13-"$BH_KAFKA_VERSION".jar >/dev/null 2>&1 \
      || { rm -rf "$tmp"; bh_die "kafka_2.13-$BH_KAFKA_VERSION.jar missing after the Maven fetch"; }
    rm -rf "$home/libs"
    rm -f "$home"/cds-*.jsa             # local-kafka's class-sharing archives
    mv "$tmp" "$home/libs"
    bh_kafka_stamp >"$home/.complete"
  ) 9>"$home/.lock"
}

# Directory holding the registry's Quarkus distribution for the configured
# version: quarkus-app/quarkus-run.jar and its lib/, app/, quarkus/.
bh_registry_home() { printf '%s/registry/%s\n' "$BH_CACHE" "$BH_REGISTRY_VERSION"; }

bh_registry_stamp() {
  printf 'apicurio-registry %s\npom %s\n' "$BH_REGISTRY_VERSION" \
    "$(sha256sum <"$BH_REGISTRY_POM" | cut -d' ' -f1)"
}

bh_registry_present() {
  local home; home="$(bh_registry_home)"
  [[ -f "$home/.complete" && -f "$home/quarkus-app/quarkus-run.jar" ]] \
    && [[ "$(cat "$home/.complete")" == "$(bh_registry_stamp)" ]]
}

# bh_java_feature JAVA: the feature release (17, 21, 25, ...) of a java
# binary, from its JDK's release file (or, lacking one, from -version).
bh_java_feature() {
  local bin home v=""
  bin="$(readlink -f "$1" 2>/dev/null)" && [[ -x "$bin" ]] || return 1
  home="$(dirname "$(dirname "$bin")")"
  if [[ -f "$home/release" ]]; then
    v="$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release")"
  fi
  [[ -n "$v" ]] || v="$("$bin" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)"
  v="${v#1.}"
  v="${v%%[.+-]*}"
  [[ "$v" =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$v"
}

# bh_registry_java: prints a java binary that can run the registry (Java 21+:
# Apicurio Registry 3.3's classes are compiled for 21); fails if none.
bh_registry_java() {
  local cand v
  if [[ -n "${BLOCKHUB_REGISTRY_JAVA:-}" ]]; then
    v="$(bh_java_feature "$BLOCKHUB_REGISTRY_JAVA")" && ((v >= 21)) \
      || { bh_log "BLOCKHUB_REGISTRY_JAVA=$BLOCKHUB_REGISTRY_JAVA is not a java 21+"; return 1; }
    printf '%s\n' "$BLOCKHUB_REGISTRY_JAVA"
    return 0
  fi
  for cand in "$(command -v java 2>/dev/null || true)" \
              ${JAVA_HOME:+"$JAVA_HOME/bin/java"} \
              $(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -rV); do
    [[ -n "$cand" && -x "$cand" ]] || continue
    v="$(bh_java_feature "$cand")" || continue
    if ((v >= 21)); then
      readlink -f "$cand"
      return 0
    fi
  done
  return 1
}

# bh_registry_ensure: makes sure $(bh_registry_home)/quarkus-app holds the
# registry's runnable distribution. Safe to run concurrently.
bh_registry_ensure() {
  if ! bh_registry_present; then
    [[ -f "$BH_REGISTRY_POM" ]] || bh_die "missing $BH_REGISTRY_POM"
    command -v mvn >/dev/null 2>&1 || bh_apt_ensure openjdk-17-jre-headless maven
    command -v mvn >/dev/null 2>&1 || bh_die "mvn not found (install maven)"
    local home; home="$(bh_registry_home)"
    mkdir -p "$home"
    (
      flock -w 600 9 || bh_die "timed out waiting for the lock on $home/.lock"
      bh_registry_present && exit 0      # another process fetched it meanwhile
      local tmp="$home/quarkus-app.tmp.$$"
      rm -rf "$tmp" "$tmp.build"
      bh_log "fetching Apicurio Registry $BH_REGISTRY_VERSION with Maven into $home/quarkus-app"
      if ! mvn -q -B -Dstyle.color=never -f "$BH_REGISTRY_POM" dependency:unpack \
            -Dapicurio.version="$BH_REGISTRY_VERSION" -DoutputDirectory="$tmp" 2>&1 \
          | sed -u 's/\x1b\[[0-9;]*m//g' | { grep -v '^$' >&2 || true; }; then
        rm -rf "$tmp" "$tmp.build"
        bh_die "Maven could not fetch io.apicurio:apicurio-registry-app:$BH_REGISTRY_VERSION:tar.gz:all (see above)"
      fi
      rm -rf "$tmp.build"                # the plugin's unpack markers
      [[ -f "$tmp/quarkus-run.jar" ]] \
        || { rm -rf "$tmp"; bh_die "quarkus-run.jar missing after the Maven fetch of Apicurio Registry $BH_REGISTRY_VERSION"; }
      rm -rf "$home/quarkus-app"
      rm -f "$home"/cds-*.jsa            # local-registry's class-sharing archives
      mv "$tmp" "$home/quarkus-app"
      bh_registry_stamp >"$home/.complete"
    ) 9>"$home/.lock"
  fi
  bh_registry_java >/dev/null \
    || bh_log "warning: no Java 21+ found (PATH, JAVA_HOME, /usr/lib/jvm): the registry cannot run; set BLOCKHUB_REGISTRY_JAVA"
  return 0
}

# --- librdkafka ----------------------------------------------------------------
# blockhub links librdkafka 2.8.0 built here, not Debian 12's librdkafka-dev
# 2.0.2: 2.0.2's SCRAM client-final-message repeats the nonce, which Kafka 4.x
# (and every broker with the CVE-2024-56128 fix) refuses, so 2.0.2 cannot
# authenticate with SCRAM-SHA-256/512 there (fixed in librdkafka 2.6.1).
# CMakeLists.txt reads $(bh_rdkafka_prefix)/lib/pkgconfig/rdkafka.pc.

bh_rdkafka_prefix() { printf '%s/librdkafka-%s\n' "$BH_CACHE" "$BH_RDKAFKA_VERSION"; }

# What the marker must contain for the built library to be current: the
# tarball and the configure flags that built it (changing either rebuilds).
bh_rdkafka_stamp() {
  printf 'librdkafka %s sha256 %s\nconfigure %s\n' "$BH_RDKAFKA_VERSION" "$BH_RDKAFKA_SHA256" \
    "${BH_RDKAFKA_CONFIGURE[*]}"
}

bh_rdkafka_present() {
  local prefix; prefix="$(bh_rdkafka_prefix)"
  [[ -f "$prefix/.complete" && -f "$prefix/lib/pkgconfig/rdkafka.pc" \
     && -e "$prefix/lib/librdkafka.so.1" ]] \
    && [[ "$(cat "$prefix/.complete")" == "$(bh_rdkafka_stamp)" ]]
}

# bh_rdkafka_ensure: makes sure $(bh_rdkafka_prefix) holds librdkafka
# 2.8.0's C library (headers, librdkafka.so, rdkafka.pc). Downloads the
# source tarball (checking its sha256), configures and builds only the C
# library (make -C src: no C++ library, examples or tests). Safe to run
# concurrently; does nothing when it is already built.
bh_rdkafka_ensure() {
  bh_rdkafka_present && return 0
  bh_apt_ensure "${BH_RDKAFKA_BUILD_PACKAGES[@]}"
  local prefix; prefix="$(bh_rdkafka_prefix)"
  mkdir -p "$BH_CACHE"
  (
    flock -w 900 9 || bh_die "timed out waiting for the lock on $BH_CACHE/.librdkafka.lock"
    bh_rdkafka_present && exit 0         # another process built it meanwhile
    local tarball="$BH_CACHE/src/librdkafka_${BH_RDKAFKA_VERSION}.orig.tar.gz"
    mkdir -p "$BH_CACHE/src"
    if [[ -n "${BLOCKHUB_RDKAFKA_TARBALL:-}" ]]; then
      cp "$BLOCKHUB_RDKAFKA_TARBALL" "$tarball.tmp.$$" \
        || bh_die "cannot read BLOCKHUB_RDKAFKA_TARBALL=$BLOCKHUB_RDKAFKA_TARBALL"
      mv "$tarball.tmp.$$" "$tarball"
    elif [[ ! -f "$tarball" ]] || ! sha256sum -c --status <<<"$BH_RDKAFKA_SHA256  $tarball"; then
      bh_log "fetching $BH_RDKAFKA_URL"
      curl -fsSL --retry 3 -o "$tarball.tmp.$$" "$BH_RDKAFKA_URL" \
        || { rm -f "$tarball.tmp.$$"; bh_die "could not download $BH_RDKAFKA_URL"; }
      mv "$tarball.tmp.$$" "$tarball"
    fi
    local got; got="$(sha256sum <"$tarball" | cut -d' ' -f1)"
    if [[ "$got" != "$BH_RDKAFKA_SHA256" ]]; then
      rm -f "$tarball"
      bh_die "librdkafka tarball sha256 $got, expected $BH_RDKAFKA_SHA256 (removed it)"
    fi
    local build="$BH_CACHE/src/librdkafka-build.$$"
    rm -rf "$build"
    mkdir -p "$build"
    tar -xzf "$tarball" -C "$build" --strip-components=1 \
      || { rm -rf "$build"; bh_die "cannot unpack $tarball"; }
    bh_log "building librdkafka $BH_RDKAFKA_VERSION into $prefix (about a minute on 2 cores)"
    local start=$SECONDS log="$build/build.log"
    rm -rf "$prefix"
    if ! (cd "$build" && ./configure --prefix="$prefix" "${BH_RDKAFKA_CONFIGURE[@]}" \
          && make -C src -j"$(nproc)" && make -C src install) >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      rm -rf "$prefix"
      bh_die "building librdkafka $BH_RDKAFKA_VERSION failed (the end of $log is above; the build directory is kept)"
    fi
    # Only the C library's shared object, headers and pkg-config file are used.
    rm -f "$prefix"/lib/librdkafka*.a "$prefix"/lib/pkgconfig/rdkafka-static.pc
    rm -rf "$build"
    bh_rdkafka_stamp >"$prefix/.complete"
    bh_log "built librdkafka $BH_RDKAFKA_VERSION in $((SECONDS - start)) s"
  ) 9>"$BH_CACHE/.librdkafka.lock"
}

bh_python() {
  if [[ -n "${BLOCKHUB_PYTHON:-}" ]]; then
    printf '%s\n' "$BLOCKHUB_PYTHON"
  elif [[ -x /usr/bin/python3 ]]; then
    printf '%s\n' /usr/bin/python3
  else
    command -v python3 || bh_die "no python3 found"
  fi
}

# What the venv marker must contain: interpreter, its version and the
# requirement list (changing either rebuilds the venv).
bh_venv_stamp() {
  local py; py="$(bh_python)"
  printf 'python %s %s\n' "$py" "$("$py" -c 'import sys; print(sys.version.split()[0])')"
  cat "$BH_REQUIREMENTS"
}

bh_venv_present() {
  [[ -x "$BH_VENV/bin/python" && -f "$BH_VENV/.bh-requirements" ]] \
    && [[ "$(cat "$BH_VENV/.bh-requirements")" == "$(bh_venv_stamp)" ]]
}

bh_venv_ensure() {
  [[ -f "$BH_REQUIREMENTS" ]] || bh_die "missing $BH_REQUIREMENTS"
  bh_venv_present && return 0
  mkdir -p "$BH_CACHE"
  (
    flock -w 600 9 || bh_die "timed out waiting for the lock on $BH_CACHE/.venv.lock"
    bh_venv_present && exit 0
    local py; py="$(bh_python)"
    bh_log "creating the Python virtualenv $BH_VENV ($py)"
    rm -rf "$BH_VENV"
    "$py" -m venv "$BH_VENV" >&2 \
      || bh_die "'$py -m venv' failed (Debian needs the python3-venv package)"
    "$BH_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$BH_REQUIREMENTS" >&2 \
      || { rm -rf "$BH_VENV"; bh_die "pip install -r $BH_REQUIREMENTS failed"; }
    bh_venv_stamp >"$BH_VENV/.bh-requirements"
  ) 9>"$BH_CACHE/.venv.lock"
}

bh_main() {
  local what=("$@")
  [[ ${#what[@]} -eq 0 ]] && what=(apt rdkafka kafka venv registry)
  local w
  for w in "${what[@]}"; do
    case "$w" in
      apt)   bh_apt_ensure "${BH_APT_PACKAGES[@]}" ;;
      rdkafka) bh_rdkafka_ensure ;;
      kafka) bh_kafka_ensure ;;
      venv)  bh_venv_ensure ;;
      registry) bh_registry_ensure ;;
      -h|--help) sed -n '2,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
      *) bh_die "unknown part '$w' (expected: apt, rdkafka, kafka, venv, registry)" ;;
    esac
  done
  echo "blockhub deps ready: cache $BH_CACHE (librdkafka $(bh_rdkafka_prefix), kafka jars $(bh_kafka_home)/libs, venv $BH_VENV, registry $(bh_registry_home)/quarkus-app)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  bh_main "$@"
fi
