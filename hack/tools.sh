#!/usr/bin/env bash
# Provides the pinned tool binaries edgefleet's tests and demo run: etcd,
# kube-apiserver, kube-controller-manager, kubectl, helm and cosign (the default sets),
# and for the tests that run pods: the node set (kubelet, kube-scheduler, kube-proxy
# from the same k8s.io/kubernetes module; containerd, its runc shim and ctr) and the
# flux set (Flux's source-controller and kustomize-controller).
#
# Versions are pinned once, in the tools modules under hack/tools/*/go.mod (with
# go.sum, so every module is checked against a committed hash). Binaries are
# cached outside the repository, keyed by tool and version:
#
#   ${EDGEFLEET_TOOLS_DIR:-$HOME/.cache/edgefleet/tools}/<set>/<version>/<binary>
#
# so a second run costs nothing. Where a download site answers (a laptop), set
# EDGEFLEET_TOOLS_SOURCE=download to fetch the official release binaries of the
# Kubernetes set and helm (checked against their published sha256) instead of
# building them; the default 'build' builds everything from the Go module proxy.
#
# Usage:
#   hack/tools.sh ensure [set...]   build/download whatever is missing (progress on stderr);
#                                   sets: etcd kubernetes helm cosign (default), node, flux, all
#   hack/tools.sh path <binary>     ensure, then print the absolute path of one binary
#   hack/tools.sh env               ensure, then print EDGEFLEET_<NAME>=<path> lines
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${EDGEFLEET_TOOLS_DIR:-$HOME/.cache/edgefleet/tools}
source_mode=${EDGEFLEET_TOOLS_SOURCE:-build}

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# required_version <tools-dir> <module>: the version a tools go.mod requires.
required_version() {
  awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$here/tools/$1/go.mod"
}

# Which set provides which binary.
set_of() {
  case "$1" in
    etcd) echo etcd ;;
    kube-apiserver|kube-controller-manager|kubectl) echo kubernetes ;;
    helm) echo helm ;;
    cosign) echo cosign ;;
    kubelet|kube-scheduler|kube-proxy|containerd|containerd-shim-runc-v2|ctr) echo node ;;
    source-controller|kustomize-controller) echo flux ;;
    *) die "unknown tool '$1' (known: etcd kube-apiserver kube-controller-manager kubectl helm cosign kubelet kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr source-controller kustomize-controller)" ;;
  esac
}

version_of_set() {
  case "$1" in
    kubernetes) required_version kubernetes k8s.io/kubernetes ;;
    etcd) required_version etcd go.etcd.io/etcd/server/v3 ;;
    helm) required_version helm helm.sh/helm/v4 ;;
    cosign) required_version cosign github.com/sigstore/cosign/v3 ;;
    node) echo "$(required_version kubernetes k8s.io/kubernetes)-containerd-$(required_version containerd github.com/containerd/containerd/v2)" ;;
    flux) echo "source-$(required_version flux-source github.com/fluxcd/source-controller)-kustomize-$(required_version flux-kustomize github.com/fluxcd/kustomize-controller)" ;;
  esac
}

binaries_of_set() {
  case "$1" in
    kubernetes) echo kube-apiserver kube-controller-manager kubectl ;;
    node) echo kubelet kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr ;;
    flux) echo source-controller kustomize-controller ;;
    *) echo "$1" ;;
  esac
}

go_build() { # <tools-module> <out-dir> <packages...>
  local set=$1 out=$2; shift 2
  command -v go >/dev/null || die "Go is needed to build $set (or set EDGEFLEET_TOOLS_SOURCE=download where a download site answers)"
  local ldflags=("-s" "-w")
  local v; v=$(version_of_set "$set")
  case "$set" in
    kubernetes)
      local major minor; major=${v#v}; major=${major%%.*}; minor=$(echo "$v" | cut -d. -f2)
      local pkg
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=("-X" "$pkg.gitVersion=$v" "-X" "$pkg.gitMajor=$major" "-X" "$pkg.gitMinor=$minor"
                  "-X" "$pkg.gitTreeState=clean" "-X" "$pkg.buildDate=1970-01-01T00:00:00Z")
      done ;;
    containerd) ldflags+=("-X" "github.com/containerd/containerd/v2/version.Version=$(required_version containerd github.com/containerd/containerd/v2)") ;;
    helm) ldflags+=("-X" "helm.sh/helm/v4/internal/version.version=$v" "-X" "helm.sh/helm/v4/internal/version.gitTreeState=clean") ;;
    cosign) ldflags+=("-X" "sigs.k8s.io/release-utils/version.gitVersion=$v" "-X" "sigs.k8s.io/release-utils/version.gitTreeState=clean") ;;
  esac
  # go.sum is committed: -mod=readonly checks every module against it, so the
  # unreachable checksum database is not needed (GONOSUMDB-style trust in go.sum).
  (cd "$here/tools/$set" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOSUMDB=off \
     go build -trimpath -ldflags "${ldflags[*]}" -o "$out/" "$@")
}

download() { # <url> <dest>, verified against <url>.sha256 (k8s) or .sha256sum (helm)
  curl -fsSL --retry 3 -o "$2" "$1"
}

provide_set() {
  local set=$1 v; v=$(version_of_set "$set")
  [ -n "$v" ] || die "no version pinned for $set in hack/tools/$set/go.mod"
  local dest="$cache/$set/$v" b missing=0
  for b in $(binaries_of_set "$set"); do [ -f "$dest/$b" ] && [ -x "$dest/$b" ] || missing=1; done
  [ $missing = 1 ] || return 0

  mkdir -p "$cache/$set"
  # One builder per set at a time: a second caller waits, then finds it cached.
  exec {lock}>"$cache/$set/.lock"
  flock "$lock"
  missing=0
  for b in $(binaries_of_set "$set"); do [ -f "$dest/$b" ] && [ -x "$dest/$b" ] || missing=1; done
  if [ $missing = 0 ]; then exec {lock}>&-; return 0; fi

  local tmp; tmp=$(mktemp -d "$cache/$set/.tmp.XXXXXX"); chmod 755 "$tmp"
  local start=$SECONDS
  if [ "$source_mode" = download ] && [ "$set" = kubernetes ]; then
    for b in $(binaries_of_set "$set"); do
      log "downloading $b $v"
      download "https://dl.k8s.io/release/$v/bin/linux/amd64/$b" "$tmp/$b"
      download "https://dl.k8s.io/release/$v/bin/linux/amd64/$b.sha256" "$tmp/$b.sha256"
      echo "$(cat "$tmp/$b.sha256")  $tmp/$b" | sha256sum -c --quiet - || die "checksum mismatch for $b"
      rm "$tmp/$b.sha256"; chmod +x "$tmp/$b"
    done
  elif [ "$source_mode" = download ] && [ "$set" = helm ]; then
    log "downloading helm $v"
    download "https://get.helm.sh/helm-$v-linux-amd64.tar.gz" "$tmp/helm.tgz"
    download "https://get.helm.sh/helm-$v-linux-amd64.tar.gz.sha256sum" "$tmp/helm.sha"
    (cd "$tmp" && echo "$(cut -d' ' -f1 helm.sha)  helm.tgz" | sha256sum -c --quiet -) || die "checksum mismatch for helm"
    tar -xzf "$tmp/helm.tgz" -C "$tmp" --strip-components=1 linux-amd64/helm
    rm "$tmp/helm.tgz" "$tmp/helm.sha"
  else
    log "building $set $v from Go modules (first time only; several minutes on 2 cores)"
    case "$set" in
      kubernetes) go_build kubernetes "$tmp" k8s.io/kubernetes/cmd/kube-apiserver \
                    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl ;;
      etcd) go_build etcd "$tmp" go.etcd.io/etcd/server/v3 && mv "$tmp/server" "$tmp/etcd" ;;
      node) go_build kubernetes "$tmp" k8s.io/kubernetes/cmd/kubelet \
              k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
            go_build containerd "$tmp" github.com/containerd/containerd/v2/cmd/containerd \
              github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
              github.com/containerd/containerd/v2/cmd/ctr ;;
      flux) go_build flux-source "$tmp" github.com/fluxcd/source-controller
            go_build flux-kustomize "$tmp" github.com/fluxcd/kustomize-controller
            # Their CRDs ship in the module zips (config/crd/bases); keep them beside.
            mkdir -p "$tmp/crds"
            for m in flux-source:github.com/fluxcd/source-controller \
                     flux-kustomize:github.com/fluxcd/kustomize-controller; do
              dir=$(cd "$here/tools/${m%%:*}" && GOFLAGS=-mod=readonly GOSUMDB=off go list -m -f '{{.Dir}}' "${m#*:}")
              cp "$dir"/config/crd/bases/*.yaml "$tmp/crds/"
            done
            chmod 644 "$tmp"/crds/*.yaml ;;
      helm) go_build helm "$tmp" helm.sh/helm/v4/cmd/helm ;;
      cosign) go_build cosign "$tmp" github.com/sigstore/cosign/v3/cmd/cosign ;;
    esac
  fi
  rm -rf "$dest"; mv "$tmp" "$dest"
  log "$set $v ready in $((SECONDS - start))s at $dest"
  exec {lock}>&-
}

DEFAULT_SETS=(etcd kubernetes helm cosign)
ALL_SETS=(etcd kubernetes helm cosign node flux)

ensure_all() {
  local s
  for s in "${DEFAULT_SETS[@]}"; do provide_set "$s"; done
}

case "${1:-ensure}" in
  ensure)
    shift || true
    if [ $# -eq 0 ]; then ensure_all; fi
    for s in "$@"; do
      case "$s" in
        all) for t in "${ALL_SETS[@]}"; do provide_set "$t"; done ;;
        etcd|kubernetes|helm|cosign|node|flux) provide_set "$s" ;;
        *) die "unknown set '$s' (etcd kubernetes helm cosign node flux all)" ;;
      esac
    done ;;
  path)
    [ $# -eq 2 ] || die "usage: hack/tools.sh path <binary>"
    s=$(set_of "$2"); provide_set "$s"; echo "$cache/$s/$(version_of_set "$s")/$2" ;;
  env)
    ensure_all
    for b in etcd kube-apiserver kube-controller-manager kubectl helm cosign; do
      s=$(set_of "$b"); name=$(echo "$b" | tr 'a-z-' 'A-Z_')
      echo "EDGEFLEET_${name}=$cache/$s/$(version_of_set "$s")/$b"
    done ;;
  versions)
    for s in "${ALL_SETS[@]}"; do echo "$s $(version_of_set "$s")"; done ;;
  *) die "unknown command '$1' (ensure | path <binary> | env | versions)" ;;
esac
