//! `devstack`: the program behind `make run`. Starts the whole system and shows what happens.
//!
//! Without a cluster (no `KUBECONFIG`, not in a pod) it starts a local real kube-apiserver +
//! etcd with the BMH CRD, a few sample BareMetalHosts and the stand-in operator (a SIMULATION
//! of Metal3: no machine is touched). With `KUBECONFIG` (or in-cluster) it uses that cluster and
//! its real Metal3, in namespace `K8S_NAMESPACE`. Either way it runs the sidecar and Envoy with
//! the filter on `PORT` (5001), prints how to send an event, then prints host state changes and
//! notifications until Ctrl-C (or SIGTERM), which stops everything it started.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Cluster, DEV_SECRET, Stack, StackOptions};
use kube::api::ListParams;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devstack: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> e2e::Result<()> {
    let external = std::env::var_os("KUBECONFIG").is_some()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let port: u16 = env_or("PORT", "5001").parse()?;
    let secret = env_or("WEBHOOK_SECRET", DEV_SECRET);
    let cluster = if external {
        Cluster::External {
            kubeconfig: std::env::var_os("KUBECONFIG").map(Into::into),
            namespace: env_or("K8S_NAMESPACE", "default"),
        }
    } else {
        Cluster::Owned
    };
    let mut sidecar_env = Vec::new();
    for name in [
        "PROVISION_IMAGE",
        "PROVISION_IMAGE_CHECKSUM",
        "PROVISION_IMAGE_CHECKSUM_TYPE",
        "PROVISION_IMAGE_FORMAT",
        "DEPROVISION_IMAGE",
        "PROVISION_TIMEOUT_SECONDS",
        "RELEASE_TIMEOUT_SECONDS",
        "BMH_API_GROUP",
        "BMH_API_VERSION",
        "BMH_PLURAL",
        "BMH_RESOURCE_ID_LABEL",
        "BMH_RESOURCE_TYPES",
        "ANNOTATION_PREFIX",
    ] {
        if let Ok(v) = std::env::var(name) {
            sidecar_env.push((name.to_string(), v));
        }
    }

    eprintln!(
        "devstack: starting{} ...",
        if external {
            " against your cluster"
        } else {
            " a local API server"
        }
    );
    let stack = Stack::start(StackOptions {
        cluster,
        listener_port: port,
        listen_on_all_interfaces: false,
        secret: secret.clone(),
        sidecar_env,
        notify_url: std::env::var("NOTIFY_URL").ok().filter(|v| !v.is_empty()),
        log_level: env_or("LOG_LEVEL", "INFO"),
        // Slow enough to watch each state in the output; real Metal3 takes minutes.
        operator_step_delay: Duration::from_secs(2),
    })
    .await?;

    print_banner(&stack, external, &secret);

    let mut seen_notifications = 0;
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let stop = kube_harness::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                if let Some(admin) = &stack.admin {
                    print_host_changes(admin, &stack.namespace, &mut states).await;
                }
                if let Some(sink) = &stack.sink {
                    let got = sink.received();
                    for n in got.iter().skip(seen_notifications) {
                        println!(
                            "notification received (signature {}): {}",
                            n.header("x-webhook-signature").unwrap_or("MISSING"),
                            String::from_utf8_lossy(&n.body)
                        );
                    }
                    seen_notifications = got.len();
                }
            }
        }
    }
    eprintln!("devstack: stopping everything it started ...");
    drop(stack);
    eprintln!("devstack: stopped");
    Ok(())
}

fn print_banner(stack: &Stack, external: bool, secret: &str) {
    let url = format!("http://{}/webhook", stack.listener());
    println!();
    println!("== bmh-webhook is running ==");
    println!(
        "Envoy + webhook filter   {url}   (admin {})",
        stack.envoy.admin_url()
    );
    println!("sidecar                  http://{}", stack.sidecar.addr());
    println!(
        "sidecar log              {}",
        stack.sidecar.log_path().display()
    );
    if external {
        println!(
            "Kubernetes               your cluster, namespace {}",
            stack.namespace
        );
    } else if let Some(server) = &stack.owned_apiserver {
        println!(
            "Kubernetes               local kube-apiserver {} (admin kubeconfig {})",
            server.url(),
            server.admin_kubeconfig().display()
        );
        println!("namespace                {}", stack.namespace);
        println!(
            "sample BareMetalHosts    {}",
            e2e::SAMPLE_HOSTS
                .iter()
                .map(|(name, id)| format!("{name} (resourceId {id})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "Metal3                   SIMULATED by the stand-in operator: no real machine is touched"
        );
    }
    if let Some(sink) = &stack.sink {
        println!(
            "notifications            received here at {} and printed below",
            sink.url()
        );
    }
    println!();
    println!("Send the sample events (signed with WEBHOOK_SECRET, timestamp refreshed):");
    println!("  export WEBHOOK_SECRET='{secret}'");
    println!("  tools/send-event.sh fixtures/event-start.json {url}");
    println!("  tools/send-event.sh fixtures/event-end.json {url}");
    if let Some(server) = &stack.owned_apiserver {
        println!("Watch the hosts:");
        println!(
            "  kubectl --kubeconfig {} -n {} get bmh -w",
            server.admin_kubeconfig().display(),
            stack.namespace
        );
    }
    println!("Ctrl-C stops everything.");
    println!();
}

async fn print_host_changes(admin: &kube::Client, ns: &str, states: &mut BTreeMap<String, String>) {
    let Ok(list) = kube_harness::bmh_api(admin, ns)
        .list(&ListParams::default())
        .await
    else {
        return;
    };
    for host in list.items {
        let Some(name) = host.metadata.name.clone() else {
            continue;
        };
        let value = serde_json::to_value(&host).unwrap_or_default();
        let state = kube_harness::provisioning_state(&value).to_string();
        let phase = value["metadata"]["annotations"]["reservations.polito.it/phase"]
            .as_str()
            .unwrap_or("-")
            .to_string();
        let line = format!("state {state:<14} reservation phase {phase}");
        if states.get(&name) != Some(&line) {
            println!("host {name:<14} {line}");
            states.insert(name, line);
        }
    }
}
