# edgefleet — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv/bin

.PHONY: help demo test venv tools system lint generate verify unit integration

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

demo: ## Run the local system: control plane, operator, gateway, three real agents, a canary and a rollback (sets everything up first)
	hack/demo.sh

test: ## Install what is missing, then lint, verify generated files and run every test tier
	hack/test.sh

venv: ## Create .venv with pinned dependencies
	hack/venv.sh

tools: ## Build or fetch the pinned etcd, kube-apiserver, kube-controller-manager, kubectl, helm, cosign
	hack/tools.sh ensure

system: ## Install and start system services (Docker engine, registry, qemu binfmt); needs root
	hack/system-deps.sh

generate: venv ## Regenerate crds/ from the API models
	$(VENV)/python hack/generate.py

verify: generate ## Fail when a generated file differs from its committed version
	@git diff --exit-code --stat -- crds charts manifests/examples/gitops || { echo "generated files are stale: commit the output of 'make generate'"; exit 1; }

lint: venv ## ruff, mypy --strict, import contracts
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy operator/edgefleet edge-node/edgefleet_node
	$(VENV)/lint-imports

unit: venv ## Unit tests only (fast, no services)
	$(VENV)/pytest tests/unit

integration: venv tools ## Integration and e2e tests (starts real services)
	$(VENV)/pytest tests/integration tests/e2e
