//go:build tools

// Package tools pins Flux's kustomize-controller (applies and health-checks manifests).
package tools

import _ "github.com/fluxcd/kustomize-controller"
