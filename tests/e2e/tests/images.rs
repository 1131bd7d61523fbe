//! The images `make images` built (out/images/*.oci.tar, tools/build-images.sh), checked as the
//! consumers read them: the OCI layout and media types Kubernetes runtimes and Istio's image
//! fetcher expect (istio.io/istio pkg/wasm/imagefetcher.go), every blob against its digest, the
//! binaries run from the extracted image alone (chroot, user 65532, nothing from the host), and
//! the deployable kustomizations (out/deploy/*) reference exactly these digests and pass a
//! server-side dry run on the real CRDs.
//!
//! Without out/images/images.json the tests say so and pass, except under CI=true (where
//! tools/test.sh runs `make images` first) where they fail.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_harness::http;
use kube_harness::apiserver::free_ports;
use kube_harness::{ApiServer, repo_root};
use serde_json::Value;
use support::{OVERLAYS, containers, deployment, docs_of, install_crds, kustomize_build, one};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// out/images/images.json, or None (with a message) when `make images` has not run here.
fn built() -> Option<Value> {
    let path = repo_root().join("out/images/images.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{} missing: tools/test.sh runs `make images` first",
                path.display()
            )
        }
        Err(_) => {
            eprintln!("SKIPPED: no {} (run `make images`)", path.display());
            None
        }
    }
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// An unpacked OCI archive.
struct Archive {
    dir: PathBuf,
    manifest_digest: String,
    manifest: Value,
    config: Value,
}

impl Archive {
    /// Unpacks `name`'s archive and checks every blob it references against its digest and size.
    fn open(images: &Value, name: &str) -> Archive {
        let image = &images["images"][name];
        let archive = repo_root().join(image["archive"].as_str().unwrap());
        let dir = support::tempfile_dir();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "untar {}", archive.display());
        let layout: Value = read_json(&dir.join("oci-layout"));
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: Value = read_json(&dir.join("index.json"));
        let manifests = index["manifests"].as_array().unwrap();
        // One image, not an index of platforms or attestations (docs/deploy.md, pitfalls).
        assert_eq!(manifests.len(), 1, "{name}: one manifest");
        assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST);
        let manifest_digest = manifests[0]["digest"].as_str().unwrap().to_string();
        assert_eq!(
            manifest_digest,
            image["digest"].as_str().unwrap(),
            "{name}: images.json names another digest than the archive's"
        );
        let mut a = Archive {
            manifest: Value::Null,
            config: Value::Null,
            manifest_digest,
            dir,
        };
        let manifest_path = a.checked_blob(&manifests[0]);
        let manifest: Value = read_json(&manifest_path);
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
        let config: Value = read_json(&a.checked_blob(&manifest["config"]));
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(
                layer["mediaType"], OCI_LAYER_GZIP,
                "{name}: layer media type"
            );
            a.checked_blob(layer);
        }
        a.manifest = manifest;
        a.config = config;
        a
    }

    /// The blob of `descriptor`, after checking its content against digest and size.
    fn checked_blob(&self, descriptor: &Value) -> PathBuf {
        let digest = descriptor["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap();
        let path = self.dir.join("blobs/sha256").join(hex);
        assert_eq!(
            sha256_hex(&path),
            hex,
            "blob {digest} does not match its digest"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            descriptor["size"].as_u64().unwrap(),
            "blob {digest} size"
        );
        path
    }

    /// Unpacks every layer, in order, into a root filesystem.
    fn rootfs(&self) -> PathBuf {
        let root = self.dir.join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        for layer in self.manifest["layers"].as_array().unwrap() {
            let st = Command::new("tar")
                .arg("-xzf")
                .arg(self.checked_blob(layer))
                .arg("-C")
                .arg(&root)
                .status()
                .unwrap();
            assert!(st.success());
        }
        root
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Istio's fetcher reads the "compat" layout: the last (here: only) layer, tar+gzip, holding a
/// file named plugin.wasm. It is the module filter/build.sh built.
#[test]
fn filter_image_is_what_istios_fetcher_reads() {
    let Some(images) = built() else { return };
    let a = Archive::open(&images, "filter");
    assert_eq!(a.manifest["layers"].as_array().unwrap().len(), 1);
    // Istio resolves an image index to linux/amd64 (go-containerregistry's default platform).
    assert_eq!(a.config["os"], "linux");
    assert_eq!(a.config["architecture"], "amd64");
    let root = a.rootfs();
    let files: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["plugin.wasm"]);
    let module = std::fs::read(root.join("plugin.wasm")).unwrap();
    assert_eq!(&module[..4], b"\0asm");
    assert_eq!(
        module,
        std::fs::read(repo_root().join("out/webhook_filter.wasm")).unwrap(),
        "plugin.wasm is not out/webhook_filter.wasm"
    );
}

/// The sidecar image: one static binary and a CA bundle, run as 65532, nothing else.
#[test]
fn sidecar_image_is_static_non_root_with_a_ca_bundle() {
    let Some(images) = built() else { return };
    let a = Archive::open(&images, "sidecar");
    let c = &a.config["config"];
    assert_eq!(a.config["os"], "linux");
    assert_eq!(a.config["architecture"], "amd64");
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bmh-sidecar"]));
    let root = a.rootfs();
    let bin = root.join("bmh-sidecar");
    let elf = Command::new("readelf")
        .arg("-lh")
        .arg(&bin)
        .output()
        .unwrap();
    let elf = String::from_utf8_lossy(&elf.stdout);
    assert!(elf.contains("X86-64"), "{elf}");
    assert!(
        !elf.contains("program interpreter"),
        "bmh-sidecar is dynamically linked:\n{elf}"
    );
    let bundle = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.matches("BEGIN CERTIFICATE").count() > 50);
    assert!(!root.join("bin/sh").exists(), "a shell in the image");
}

/// Runs `program` inside `root` (chroot) as 65532, with only `env`.
fn chrooted(root: &Path, program: &str, args: &[&str], env: &[(&str, String)]) -> Command {
    // The child's environment is cleared: find chroot on this process's PATH.
    let chroot = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.arg("--userspec=65532:65532")
        .arg(root)
        .arg(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

fn root_user() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary of the image, in the image's filesystem only, as its ServiceAccount against the
/// test API server: it serves its probes and metrics on the admin port, reaches the API server
/// (TLS, the kubeconfig's CA), keeps /metrics off the public port and stops cleanly on SIGTERM.
#[tokio::test]
async fn sidecar_from_its_image_runs_with_nothing_from_the_host() {
    let Some(images) = built() else { return };
    if !root_user() {
        assert!(std::env::var("CI").is_err(), "CI runs as root");
        eprintln!("SKIPPED: chroot needs root");
        return;
    }
    let a = Archive::open(&images, "sidecar");
    let root = a.rootfs();
    let server = ApiServer::shared().await.unwrap();
    let ns = server.create_namespace("image-sidecar").await.unwrap();
    server
        .apply_file("k8s/base/rbac.yaml", &ns, false)
        .await
        .unwrap();
    let kubeconfig = server
        .service_account_kubeconfig(&ns, "bmh-webhook-sidecar")
        .await
        .unwrap();
    // The kubeconfig and the API server's CA, copied into the image's filesystem.
    let mut kc: Value = read_json(&kubeconfig);
    std::fs::copy(server.ca_cert_path(), root.join("ca.crt")).unwrap();
    kc["clusters"][0]["cluster"]["certificate-authority"] = "/ca.crt".into();
    std::fs::write(root.join("kubeconfig"), kc.to_string()).unwrap();

    let ports = free_ports(2).unwrap();
    let public: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", ports[1]).parse().unwrap();
    let env = [
        ("KUBECONFIG", "/kubeconfig".to_string()),
        ("K8S_NAMESPACE", ns.clone()),
        (
            "PROVISION_IMAGE",
            "http://images.example.org/ubuntu-24.04.qcow2".to_string(),
        ),
        (
            "PROVISION_IMAGE_CHECKSUM",
            "http://images.example.org/ubuntu-24.04.qcow2.sha256sum".to_string(),
        ),
        ("PROVISION_IMAGE_CHECKSUM_TYPE", "sha256".to_string()),
        ("WEBHOOK_SECRET", "0123456789abcdef".repeat(2)),
        ("SIDECAR_ADDR", public.to_string()),
        ("ADMIN_ADDR", admin.to_string()),
    ];
    let log = root.join("sidecar.log");
    let child = chrooted(&root, "/bmh-sidecar", &[], &env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let tail = || std::fs::read_to_string(&log).unwrap_or_default();
    loop {
        if http::get(admin, "/readyz").is_ok_and(|r| r.status == 200) {
            break;
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("the sidecar exited ({st}):\n{}", tail());
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never 200 on the admin port:\n{}",
            tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(http::get(admin, "/healthz").unwrap().status, 200);
    assert_eq!(http::get(public, "/healthz").unwrap().status, 200);
    let metrics = http::get(admin, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains(
            "bmh_sidecar_http_request_duration_seconds_count{path=\"/readyz\",code=\"200\"}"
        ),
        "{text}"
    );
    // Metrics never on the public port, and no webhook on the admin port.
    assert_eq!(http::get(public, "/metrics").unwrap().status, 404);
    assert_eq!(
        http::send(
            admin,
            &[
                http::head(
                    "POST",
                    "/webhook",
                    &[
                        ("content-type", "application/json"),
                        ("content-length", "2")
                    ],
                )
                .as_bytes(),
                b"{}"
            ]
        )
        .unwrap()
        .status,
        404
    );
    // SIGTERM: drains and exits 0.
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status}\n{}", tail());
}

/// The Envoy image: Envoy starts from the image alone (its glibc included) and accepts the
/// configuration it ships with (the deployed envoy.yaml) and the module next to it.
#[test]
fn envoy_from_its_image_validates_the_deployed_configuration() {
    let Some(images) = built() else { return };
    let a = Archive::open(&images, "envoy");
    assert_eq!(a.config["config"]["User"], "65532:65532");
    assert_eq!(
        a.config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/envoy"])
    );
    let root = a.rootfs();
    assert_eq!(
        std::fs::read(root.join("etc/envoy/webhook_filter.wasm")).unwrap(),
        std::fs::read(repo_root().join("out/webhook_filter.wasm")).unwrap()
    );
    assert_eq!(
        std::fs::read(root.join("etc/envoy/config/envoy.yaml")).unwrap(),
        std::fs::read(repo_root().join("envoy/envoy.yaml")).unwrap()
    );
    if !root_user() {
        eprintln!("SKIPPED: chroot needs root");
        return;
    }
    let out = chrooted(
        &root,
        "/usr/local/bin/envoy",
        &["--mode", "validate", "-c", "/etc/envoy/config/envoy.yaml"],
        &[("WEBHOOK_SECRET", "0123456789abcdef".repeat(2))],
    )
    .output()
    .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "envoy --mode validate failed:\n{all}");
    assert!(all.contains("OK"), "{all}");
}

/// What a user applies: out/deploy/<overlay> references the archives' digests, in the pods and in
/// the WasmPlugin (url by digest, sha256 = the manifest digest Istio compares), and passes a
/// server-side dry run on the real CRDs.
#[tokio::test]
async fn deployable_manifests_carry_the_built_digests() {
    let Some(images) = built() else { return };
    let registry = images["registry"].as_str().unwrap();
    let digest = |name: &str| {
        // Recomputed from the archive, not taken from images.json.
        Archive::open(&images, name).manifest_digest.clone()
    };
    let (filter, sidecar, envoy) = (digest("filter"), digest("sidecar"), digest("envoy"));
    let server = ApiServer::shared().await.unwrap();
    for (overlay, apis) in OVERLAYS {
        let dir = repo_root().join("out/deploy").join(overlay);
        let yaml = kustomize_build(&dir);
        assert!(
            !yaml.contains("registry.invalid"),
            "{overlay}: an unbuilt image"
        );
        let docs = docs_of(&yaml);
        for c in containers(deployment(&docs)) {
            let want = match c["name"].as_str().unwrap() {
                "sidecar" => format!("{registry}/sidecar@{sidecar}"),
                "envoy" => format!("{registry}/envoy@{envoy}"),
                "istio-proxy" => "auto".to_string(),
                other => panic!("{overlay}: unexpected container {other}"),
            };
            assert_eq!(c["image"], want, "{overlay}");
        }
        if overlay.starts_with("istio") {
            let plugin = one(&docs, "WasmPlugin");
            assert_eq!(
                plugin["spec"]["url"],
                format!("oci://{registry}/filter@{filter}")
            );
            assert_eq!(
                plugin["spec"]["sha256"],
                filter.strip_prefix("sha256:").unwrap()
            );
        }
        install_crds(server, apis).await;
        let ns = server
            .create_namespace(&format!("deploy-{overlay}"))
            .await
            .unwrap();
        server
            .apply_yaml(&yaml, &ns, true)
            .await
            .unwrap_or_else(|e| panic!("dry run of out/deploy/{overlay} rejected: {e}"));
    }
}

/// The archives are gzip tar files a plain `tar` reads, and the layer of the filter image holds
/// plugin.wasm with the mode of a data file.
#[test]
fn filter_layer_entries_are_plain_files() {
    let Some(images) = built() else { return };
    let a = Archive::open(&images, "filter");
    let layer = a.checked_blob(&a.manifest["layers"][0]);
    let out = Command::new("tar")
        .arg("-tvzf")
        .arg(&layer)
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    let line = listing
        .lines()
        .find(|l| l.ends_with("plugin.wasm"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with("-rw-r--r--"), "{line}");
    let mut f = std::fs::File::open(&layer).unwrap();
    let mut magic = [0u8; 2];
    f.read_exact(&mut magic).unwrap();
    assert_eq!(magic, [0x1f, 0x8b], "the layer is gzip");
}
