//go:build tools

// Package tools pins Flux's source-controller (serves Git repositories as artifacts).
package tools

import _ "github.com/fluxcd/source-controller"
