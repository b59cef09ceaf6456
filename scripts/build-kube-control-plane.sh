#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver and kube-controller-manager v1.20.2) for
# the integration tests in Tests/integration/test_real_kube.py, and installs etcd.
#
#   scripts/build-kube-control-plane.sh [CACHE_DIR]
#
# CACHE_DIR (default /var/cache/secrets-store-csi-driver/kube-v1.20.2, or $KUBE_CACHE_DIR) is
# outside the repository; the binaries land in CACHE_DIR/bin and CACHE_DIR/.complete is written
# only after they all built and ran. A second run finds the marker and returns at once, so only
# a fresh machine pays for the build (several minutes on 2 cores). KUBE_REBUILD=1 builds again.
#
# Nobody packages kube-apiserver for Debian or PyPI, so it is built from Debian bookworm's source
# package `kubernetes` (upstream v1.20.2 with its complete vendor/ tree) with Debian's Go 1.19:
#   - the source comes from deb.debian.org through a private apt state (deb-src entries in a
#     temporary directory), so the system's apt configuration is left alone;
#   - Debian's patches (debian/patches/series) are applied;
#   - vendor/github.com/modern-go/reflect2 and vendor/github.com/json-iterator/go do not work with
#     Go >= 1.18; their top-level files are replaced with Debian's packaged versions (1.0.2, 1.1.12);
#   - the build is in GOPATH mode, as Debian's is (module mode wants to rewrite go.mod);
#   - pkg/generated/openapi is not in the tarball: `make gen_openapi` generates it;
#   - the version is stamped with -ldflags -X, as upstream's build does.
# Needs root for apt-get (it installs only what is missing).
set -euo pipefail

KUBE_VERSION=v1.20.2
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
GO_PACKAGE=golang-1.19-go
GOROOT_DIR=/usr/lib/go-1.19
APT_PACKAGES=("$GO_PACKAGE" golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
              etcd-server rsync make patch openssl)
BINARIES=(kube-apiserver kube-controller-manager)

cache=${1:-${KUBE_CACHE_DIR:-/var/cache/secrets-store-csi-driver/kube-$KUBE_VERSION}}
bin=$cache/bin
marker=$cache/.complete
start=$(date +%s)

log() { printf '[build-kube-control-plane %4ss] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }

is_built() {
    [ -f "$marker" ] || return 1
    local b
    for b in "${BINARIES[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mkdir -p "$cache"
# One build at a time: a second run waits for the first, then finds the marker.
exec 9>"$cache/.lock"
if ! flock -n 9; then
    log "another build holds $cache/.lock; waiting"
    flock 9
fi

if [ "${KUBE_REBUILD:-0}" = 1 ]; then
    rm -f "$marker"
fi
if is_built; then
    install_packages etcd-server openssl
    log "cached: $bin ($(cat "$marker"))"
    exit 0
fi

install_packages "${APT_PACKAGES[@]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/kube-build.XXXXXX")
chmod 755 "$work"   # apt downloads as _apt
cleanup() {
    rm -rf "$cache/bin.new"
    # Anything read-only (a module cache) needs write permission first; usually nothing is.
    rm -rf "$work" 2>/dev/null || { chmod -R u+w "$work"; rm -rf "$work"; }
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- source -----------------------------------------------------------------------------------
src_dir=$cache/src
if [ ! -f "$src_dir/.complete" ]; then
    log "downloading the Debian source package kubernetes=$DEB_VERSION"
    apt_state=$work/apt
    mkdir -p "$apt_state/sources.list.d" "$apt_state/lists/partial" "$apt_state/cache/archives/partial" "$work/dl"
    cat >"$apt_state/sources.list.d/deb-src.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_state/sources.list.d"
              -o "Dir::State::Lists=$apt_state/lists" -o "Dir::Cache=$apt_state/cache"
              -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$apt_state/prefs.d")
    mkdir -p "$apt_state/prefs.d"
    # apt downloads as the _apt user when it can; let it write there.
    if id _apt >/dev/null 2>&1; then chown -R _apt "$work/dl" "$apt_state"; fi
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work/dl" && apt-get "${apt_opts[@]}" source -qq --download-only "kubernetes=$DEB_VERSION")
    # apt checked the .dsc against the signed Release file and the tarballs against the .dsc.
    rm -rf "$src_dir"
    mkdir -p "$src_dir"
    cp "$work/dl"/kubernetes_* "$src_dir/"
    touch "$src_dir/.complete"
fi

gopath=$work/gopath
tree=$gopath/src/k8s.io/kubernetes
mkdir -p "$tree"
log "unpacking"
tar -xzf "$src_dir"/kubernetes_*.orig.tar.gz -C "$tree" --strip-components=1
tar -xJf "$src_dir"/kubernetes_*.debian.tar.xz -C "$tree"

log "applying Debian's patches"
while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    patch -d "$tree" -p1 -s --no-backup-if-mismatch <"$tree/debian/patches/$p"
done <"$tree/debian/patches/series"

log "replacing vendored reflect2 and json-iterator with Debian's (Go >= 1.18)"
replace_vendored() {
    local pkg=$1 from=/usr/share/gocode/src/$1 to=$tree/vendor/$1 f
    [ -d "$from" ] || { echo "missing $from" >&2; exit 1; }
    find "$to" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    for f in "$from"/*.go "$from"/*.s; do
        [ -e "$f" ] || continue
        case "$f" in *_test.go) continue ;; esac
        cp "$f" "$to/"
    done
}
replace_vendored github.com/modern-go/reflect2
replace_vendored github.com/json-iterator/go

export GOPATH=$gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE=$work/gocache HOME=$work/home
export PATH=$GOROOT_DIR/bin:$PATH
mkdir -p "$HOME"
go version >&2

cd "$tree"
log "make gen_openapi"
make gen_openapi >"$work/gen_openapi.log" 2>&1 || { tail -50 "$work/gen_openapi.log" >&2; exit 1; }

# The ldflags upstream's hack/lib/version.sh sets (gitTreeState "archive": built from a tarball).
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for v in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=20"
    ldflags+=" -X $v.gitTreeState=archive -X $v.buildDate=$build_date"
done

mkdir -p "$cache/bin.new"
for b in "${BINARIES[@]}"; do
    log "go build ./cmd/$b"
    go build -o "$cache/bin.new/$b" -ldflags "$ldflags" "./cmd/$b"
    "$cache/bin.new/$b" --version >&2
done

rm -rf "$bin"
mv "$cache/bin.new" "$bin"
# The source tarballs are only needed to build; the binaries are what the cache is for.
rm -rf "$src_dir"
elapsed=$(( $(date +%s) - start ))
echo "kubernetes $KUBE_VERSION (Debian $DEB_VERSION, $(go version | cut -d' ' -f3)), built $build_date in ${elapsed}s" >"$marker.new"
mv "$marker.new" "$marker"
# The cache is complete: a waiting run may go on while this one removes its build tree.
flock -u 9
log "built in ${elapsed}s: $bin; removing the build tree"
cleanup
trap - EXIT
log "done in $(( $(date +%s) - start ))s"
