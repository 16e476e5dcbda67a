#!/bin/sh
# Regenerate the build modules under build/go/ from build/versions.env.
#
# One module per component (kube, etcd, kwok, helm) so that their dependency graphs
# never meet: each builds against exactly the versions its own release was tested with.
#
# k8s.io/kubernetes' published go.mod requires its ~30 staging modules (k8s.io/api,
# k8s.io/client-go, ...) at v0.0.0 and replaces them with ./staging/... paths that only
# exist in its Git tree, so the proxy cannot resolve them.  The kube module therefore
# replaces every one of them with its published v0.MINOR.PATCH twin - the list is read
# from that go.mod here, never copied by hand.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
export GOTOOLCHAIN GOFLAGS=-mod=mod

staging_version=$(echo "$KUBERNETES_VERSION" | sed 's/^v1\./v0./')

fresh() { # fresh DIR MODULE-PATH: an empty module directory
    rm -rf "$here/go/$1"
    mkdir -p "$here/go/$1"
    (cd "$here/go/$1" && go mod init "$2" >/dev/null 2>&1)
}

# kube: kube-apiserver, kube-controller-manager, kube-scheduler
fresh kube release-console.local/build/kube
gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$gomod" ] || { echo "modules.sh: no go.mod for k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod")
[ -n "$staging" ] || { echo "modules.sh: no staging replaces found in $gomod" >&2; exit 1; }
cd "$here/go/kube"
for m in $staging; do
    go mod edit -replace "$m=$m@$staging_version"
done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
              "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
              "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION"
go mod tidy

fresh etcd release-console.local/build/etcd
cd "$here/go/etcd"
go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
go mod tidy

fresh kwok release-console.local/build/kwok
cd "$here/go/kwok"
go get -tool "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
go mod tidy

fresh helm release-console.local/build/helm
cd "$here/go/helm"
go get -tool "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
go mod tidy
echo "modules.sh: build/go/{kube,etcd,kwok,helm} written from versions.env"
