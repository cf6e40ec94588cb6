# tenantkit — `make help` lists the targets.
.DEFAULT_GOAL := help
GO ?= go

.PHONY: help run test test-pooled race lint generate check-generate bench bench-rls soak fuzz build

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## build bin/tenantkit and run `tenantkit dev`: find or start PostgreSQL, migrate, serve on 127.0.0.1:8081
	@echo "make run: building bin/tenantkit (the first build on a cold cache takes a few minutes)"
	$(GO) build -o bin/tenantkit ./cmd/tenantkit
	@echo "make run: starting bin/tenantkit dev (Ctrl-C or SIGTERM stops it)"
	exec bin/tenantkit dev

test: ## run every test against a real PostgreSQL (vet, gofmt, go test)
	@echo "make test: go vet, gofmt, then go test (the first run on a cold cache compiles for a few minutes)"
	$(GO) vet ./...
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test -count=1 ./...

lint: ## staticcheck (pinned as a tool in go.mod)
	$(GO) tool staticcheck ./...

race: ## the tests under the race detector
	$(GO) test -count=1 -race ./...

test-pooled: ## the end-to-end suite with every service behind a PgBouncer of its own (needs pgbouncer)
	TENANTKIT_TEST_POOLER=pgbouncer $(GO) test -count=1 ./cmd/tenantkit

build: ## build bin/tenantkit
	$(GO) build -o bin/tenantkit ./cmd/tenantkit

generate: ## regenerate gqlgen code (graph/) and the Hasura permission rules (hasura/metadata)
	$(GO) generate ./...

check-generate: generate ## fail when committed generated code is stale
	@git diff --exit-code -- graph gqlgen.yml hasura/metadata >/dev/null || { git diff --stat -- graph hasura/metadata; echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- graph hasura/metadata)" || { git status --porcelain -- graph hasura/metadata; echo "untracked generated files: run make generate and commit"; exit 1; }

bench: ## every benchmark, and the table of figures, baselines and targets (about 5 minutes)
	scripts/bench.sh

bench-rls: ## only the RLS benchmark (1,000 / 10,000 / 100,000 tenants)
	BENCH=rls scripts/bench.sh

FUZZTIME ?= 30s

fuzz: ## every Go fuzz target for FUZZTIME each (default 30s, about 5 minutes); FUZZ=regexp picks targets
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh '$(FUZZ)'

soak: ## 10 minutes of mixed traffic at 100/s on 2 replicas (SOAK_DURATION, SOAK_RATE, SOAK_REPLICAS): no errors, flat memory, steady p99
	scripts/soak.sh
