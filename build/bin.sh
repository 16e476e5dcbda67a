#!/bin/sh
# Build the lab's real components into .cache/bin/ of this checkout (`make bin`).
#
#   sh build/bin.sh [PROGRAM...]   (default: all of etcd kube-apiserver
#                                   kube-controller-manager kube-scheduler kwok helm)
#
# Needs only `go` (and a POSIX shell).  Binaries are cached machine-wide under
# ~/.cache/release-console/bin-<hash>/, keyed by the hash of build/versions.env and the
# build modules (build/go/*/go.mod, go.sum), so a second clone copies them instead of building (a cold build of
# kube-apiserver takes many minutes on two cores).  Each program is cached as soon as it
# is built, so a program that is needed early (helm) is available before the rest.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/versions.env"
export GOTOOLCHAIN
all="helm etcd kwok kube-apiserver kube-controller-manager kube-scheduler"
want=${*:-$all}

fail() { echo "make bin: FAILED: $*" >&2; exit 1; }

# The key: the pins and the build modules they generate (not this script, so that a fix
# here does not cost every machine a 15-minute rebuild of identical binaries).
key=$(cat "$here/versions.env" "$here"/go/*/go.mod "$here"/go/*/go.sum | cksum | cut -d' ' -f1)
cache=${RELEASE_CONSOLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/release-console}/bin-$key
out=$root/.cache/bin
mkdir -p "$cache" "$out" || fail "cannot create $cache or $out"

missing=""
for p in $want; do
    [ -x "$cache/$p" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
    # Go's own installer puts it in /usr/local/go/bin, which a bare environment may lack.
    command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null 2>&1 || fail "no 'go' on PATH: the lab's components ($missing ) \
are built from their Go modules; install Go 1.26 or newer (and reach the Go module proxy)"
    staging_version=$(echo "$KUBERNETES_VERSION" | sed 's/^v1\./v0./')
    minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
    # A module build reports v0.0.0 to clients unless the version is stamped in.
    kv=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        kv="$kv -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitVersion=$KUBERNETES_VERSION"
        kv="$kv -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    tmp=$(mktemp -d "$cache/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    build() { # build MODULE-DIR LDFLAGS NAME=PACKAGE...  (into $tmp, then into the cache)
        dir=$1; ld=$2; shift 2
        pkgs=""; for np in "$@"; do pkgs="$pkgs ${np#*=}"; done
        echo "make bin: building$pkgs (build/go/$dir)" >&2
        start=$(date +%s)
        # Build in a copy of the module: a checkout that changes meanwhile (git rebase)
        # does not pull the directory from under a build that takes many minutes.
        mkdir -p "$tmp/$dir" "$tmp/mod/$dir"
        cp "$here/go/$dir/go.mod" "$here/go/$dir/go.sum" "$tmp/mod/$dir/"
        # shellcheck disable=SC2086
        (cd "$tmp/mod/$dir" && go build -mod=readonly -trimpath -ldflags "-s -w $ld" -o "$tmp/$dir/" $pkgs) \
            || fail "go build of$pkgs failed (see the errors above)"
        for np in "$@"; do
            name=${np%%=*}; pkg=${np#*=}; built=$(basename "$pkg")
            case $built in v[0-9]*) built=$(basename "$(dirname "$pkg")");; esac
            mv -f "$tmp/$dir/$built" "$cache/$name"
        done
        echo "make bin: built$pkgs in $(( $(date +%s) - start )) s" >&2
    }
    need() { for p in "$@"; do case " $missing " in *" $p "*) return 0;; esac; done; return 1; }
    if need helm; then
        build helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm=helm.sh/helm/v3/cmd/helm
    fi
    if need etcd; then build etcd "" etcd=go.etcd.io/etcd/server/v3; fi
    if need kwok; then
        build kwok "" kwok=sigs.k8s.io/kwok/cmd/kwok
    fi
    if need kube-apiserver kube-controller-manager kube-scheduler; then
        build kube "$kv" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
            kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
            kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
    fi
fi
for p in $want; do
    [ -x "$cache/$p" ] || fail "$p was not built into $cache"
    cp -f "$cache/$p" "$out/$p.tmp" && mv -f "$out/$p.tmp" "$out/$p"
done
echo "make bin: $want in $out (cache $cache)" >&2
