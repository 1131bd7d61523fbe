// istio-wasm-check: feeds the filter image of `make images` to Istio's own Wasm module cache
// (istio.io/istio pkg/wasm, the code istio-agent runs for every WasmPlugin with an oci:// url),
// through an in-memory OCI registry on loopback, and reports what Istio makes of it:
//
//  1. the archive is pushed unchanged to the registry (same manifest digest);
//  2. LocalFileCache.Get with the WasmPlugin's url and sha256 (= the manifest digest, as
//     out/deploy/istio sets them) returns a module byte-identical to plugin.wasm;
//  3. the same with a wrong sha256 is refused ("does not match"), which with FAIL_RELOAD makes
//     istio-agent install a deny-all filter.
//
// Usage: go run . <filter.oci.tar> <plugin.wasm>   (tools/istio-wasm-check.sh)
package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"istio.io/istio/pkg/wasm"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "istio-wasm-check: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: istio-wasm-check <filter.oci.tar> <plugin.wasm>")
	}
	want, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	dir, err := os.MkdirTemp("", "istio-wasm-check")
	if err != nil {
		fail("%v", err)
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command("tar", "-xf", os.Args[1], "-C", dir).CombinedOutput(); err != nil {
		fail("untar: %v %s", err, out)
	}
	index, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		fail("oci layout: %v", err)
	}
	im, err := index.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		fail("index: %v (%d manifests)", err, len(im.Manifests))
	}
	img, err := index.Image(im.Manifests[0].Digest)
	if err != nil {
		fail("image: %v", err)
	}
	digest, _ := img.Digest()

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host+"/bmh-webhook/filter:0.1.0", name.Insecure)
	if err != nil {
		fail("%v", err)
	}
	if err := remote.Write(ref, img); err != nil {
		fail("push: %v", err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		fail("pull manifest: %v", err)
	}
	if desc.Digest != digest {
		fail("the registry serves %s, the archive has %s", desc.Digest, digest)
	}
	fmt.Printf("pushed %s (manifest %s)\n", ref, digest)

	// What out/deploy/istio writes: url by digest, sha256 = the manifest digest.
	url := fmt.Sprintf("oci://%s/bmh-webhook/filter@%s", host, digest)
	if err := os.MkdirAll(dir+"/cache", 0o755); err != nil {
		fail("%v", err)
	}
	cache := wasm.NewLocalFileCache(dir+"/cache", wasm.Options{})
	defer cache.Cleanup()
	path, err := cache.Get(url, wasm.GetOptions{
		Checksum:       digest.Hex,
		ResourceName:   "metal3.bmh-webhook-filter",
		RequestTimeout: 30 * time.Second,
		PullPolicy:     wasm.IfNotPresent,
	})
	if err != nil {
		fail("Istio's cache refused the image: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	if !bytes.Equal(got, want) {
		fail("Istio extracted %d bytes, plugin.wasm has %d", len(got), len(want))
	}
	fmt.Printf("istio pkg/wasm LocalFileCache.Get(%s, sha256=%s): %d bytes, identical to plugin.wasm\n", url, digest.Hex, len(got))

	// By tag with the right sha256 (the other form the WasmPlugin allows).
	tagURL := fmt.Sprintf("oci://%s/bmh-webhook/filter:0.1.0", host)
	if _, err := cache.Get(tagURL, wasm.GetOptions{Checksum: digest.Hex, ResourceName: "metal3.tag", RequestTimeout: 30 * time.Second}); err != nil {
		fail("by tag with sha256: %v", err)
	}
	fmt.Printf("by tag %s with sha256: accepted\n", tagURL)

	// A wrong sha256 (e.g. an index digest after a buildx push with provenance) is refused.
	wrong := strings.Repeat("0", 64)
	_, err = cache.Get(tagURL, wasm.GetOptions{Checksum: wrong, ResourceName: "metal3.wrong", RequestTimeout: 30 * time.Second, PullPolicy: wasm.Always})
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		fail("a wrong sha256 was not refused: %v", err)
	}
	fmt.Printf("wrong sha256 refused: %v\n", err)
}
