# Entry points. Each target is a script in tools/ so that CI and people run the same thing.
.PHONY: test run wasm bootstrap bench

## Run every test tier (installs what is missing first).
test:
	tools/test.sh

## Run the whole system locally (local API server + Metal3 operator); CLUSTER=1 uses your cluster.
run:
	tools/run.sh

## Build the optimised filter artifact into out/.
wasm:
	filter/build.sh

## Install toolchains, Envoy and the API server build (cached outside the repo).
bootstrap:
	@tools/bootstrap.sh >/dev/null

## Benchmarks (see BENCHMARKS.md).
bench:
	bench/filter/run.sh
	bench/sidecar/run.sh
