# Entry points. Each target is a script in tools/ so that CI and people run the same thing.
.PHONY: test test-unit run wasm images bootstrap bench

## Run every test tier (installs what is missing first).
test:
	tools/test.sh

## The pure tests only (native + wasm32): seconds, nothing installed, no root.
test-unit:
	tools/test-unit.sh

## Run the whole system locally (local API server + Metal3 operator); CLUSTER=1 uses your cluster.
run:
	tools/run.sh

## Build the optimised filter artifact into out/.
wasm:
	filter/build.sh

## Build the images as OCI archives in out/images and the deployable out/deploy/<overlay>
## (IMAGE_REGISTRY=registry.example.org/bmh-webhook by default; docs/deploy.md).
images:
	tools/build-images.sh

## Install toolchains, Envoy and the API server build (cached outside the repo).
bootstrap:
	@tools/bootstrap.sh >/dev/null

## Benchmarks (see BENCHMARKS.md).
bench:
	bench/filter/run.sh
	bench/sidecar/run.sh
