//! `devstack`: the program behind `make run`. Starts the whole system and shows what happens.
//!
//! By default it NEVER touches a real cluster, whatever `KUBECONFIG` says: it starts a local
//! real kube-apiserver + etcd, a namespace with three sample BareMetalHosts created as a user
//! creates them, and a Metal3 operator for them: the REAL baremetal-operator with its fixture
//! provisioner when it is built (`tools/build-bmo.sh`; no machine is touched), else the
//! stand-in simulation. Only with the explicit opt-in `BMH_WEBHOOK_USE_CLUSTER=1` (`make run
//! CLUSTER=1`) does it use your cluster (`KUBECONFIG`, or in-cluster) and its Metal3, in
//! namespace `K8S_NAMESPACE`. Either way it runs the sidecar and Envoy with the filter on `PORT`
//! (5001), prints how to send an event, then prints host state changes and notifications until
//! Ctrl-C (or SIGTERM), which stops everything it started.
//!
//! `devstack --plan` prints the decision (which Kubernetes, why) and exits without starting
//! anything.
//!
//! Environment: `BMH_WEBHOOK_USE_CLUSTER` (`1`/`true`/`yes` to use your cluster; unset, empty,
//! `0`, `false`, `no`: local), `BMH_WEBHOOK_OPERATOR` (`bmo` or `stand-in`; default: `bmo` when
//! built), `WEBHOOK_SECRET` (default [`DEVSTACK_SECRET`]), `PORT`, `NOTIFICATION_ENDPOINT`, `LOG_LEVEL`,
//! and the sidecar's settings, passed through.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use e2e::{Cluster, RESOURCE_ID_LABEL, SAMPLE_HOSTS, Stack, StackOptions};
use kube::api::ListParams;
use kube_harness::operator::StandInConfig;
use kube_harness::{ApiServer, Crds, Operator, OperatorKind, bmo_build};

/// The development secret `make run` signs with unless `WEBHOOK_SECRET` is set: 37 bytes,
/// above the filter's 32-byte minimum. Never a production value.
const DEVSTACK_SECRET: &str = "dev-secret-change-me-0123456789abcdef";
/// The explicit opt-in to run against a real cluster (`make run CLUSTER=1` sets it).
const USE_CLUSTER_ENV: &str = "BMH_WEBHOOK_USE_CLUSTER";
/// Which Metal3 operator a local run starts: `bmo` or `stand-in`.
const OPERATOR_ENV: &str = "BMH_WEBHOOK_OPERATOR";
/// The provisioning image a local run configures when the user set none of these: one that
/// BMO's webhook accepts (http URL, a checksum, qcow2). The fixture never downloads it.
const IMAGE_DEFAULTS: [(&str, &str); 4] = [
    (
        "PROVISION_IMAGE",
        "http://images.example.org/ubuntu-24.04.qcow2",
    ),
    (
        "PROVISION_CHECKSUM",
        "http://images.example.org/ubuntu-24.04.qcow2.sha256sum",
    ),
    ("PROVISION_CHECKSUM_TYPE", "sha256"),
    ("PROVISION_IMAGE_FORMAT", "qcow2"),
];
/// Sidecar settings passed through from the environment when set.
const PASSED_THROUGH: [&str; 9] = [
    "DEPROVISION_IMAGE",
    "PROVISIONING_TIMEOUT",
    "RELEASE_TIMEOUT_SECONDS",
    "BMH_API_GROUP",
    "BMH_API_VERSION",
    "BMH_PLURAL",
    "BMH_RESOURCE_ID_LABEL",
    "BMH_RESOURCE_TYPES",
    "ANNOTATION_PREFIX",
];

/// Which Kubernetes a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A private kube-apiserver + etcd on loopback, thrown away at the end.
    Local,
    /// The user's cluster: a kubeconfig path (None: in-cluster or kube's default) and the
    /// namespace of its BareMetalHosts.
    Cluster {
        kubeconfig: Option<PathBuf>,
        namespace: String,
    },
}

/// The decision, with what the user should be told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    target: Target,
    notes: Vec<String>,
}

/// Whether `BMH_WEBHOOK_USE_CLUSTER` opts in. Unknown values are an error, not a guess.
fn opted_in(value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(format!(
            "{USE_CLUSTER_ENV}={other:?} is neither 1/true/yes nor 0/false/no"
        )),
    }
}

/// Decides which Kubernetes to use. The real cluster only with the explicit opt-in: a
/// `KUBECONFIG` (or running in a pod) alone never selects it, so `make run` cannot act on a
/// cluster by accident.
fn plan(
    use_cluster: Option<&str>,
    kubeconfig: Option<&str>,
    in_pod: bool,
    namespace: Option<&str>,
) -> Result<Plan, String> {
    let kubeconfig = kubeconfig.filter(|k| !k.is_empty());
    if opted_in(use_cluster)? {
        let namespace = namespace
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_string();
        return Ok(Plan {
            target: Target::Cluster {
                kubeconfig: kubeconfig.map(PathBuf::from),
                namespace,
            },
            notes: Vec::new(),
        });
    }
    let mut notes = Vec::new();
    let why = match (kubeconfig, in_pod) {
        (Some(k), _) => Some(format!("KUBECONFIG is set ({k})")),
        (None, true) => Some("this runs in a pod".to_string()),
        (None, false) => None,
    };
    if let Some(why) = why {
        notes.push(format!(
            "{why}, but make run uses a local API server and never touches a cluster unless \
             asked: run `make run CLUSTER=1` ({USE_CLUSTER_ENV}=1) to use your cluster"
        ));
    }
    Ok(Plan {
        target: Target::Local,
        notes,
    })
}

/// Which operator a local run starts: `BMH_WEBHOOK_OPERATOR`, else the real BMO when built.
fn pick_operator(choice: Option<&str>, bmo_built: bool) -> Result<OperatorKind, String> {
    match choice.map(str::trim).unwrap_or("") {
        "" if bmo_built => Ok(OperatorKind::Bmo),
        "" => Ok(OperatorKind::StandIn),
        "bmo" if bmo_built => Ok(OperatorKind::Bmo),
        "bmo" => Err(format!(
            "{OPERATOR_ENV}=bmo, but the baremetal-operator is not built (see tools/build-bmo.sh)"
        )),
        "stand-in" | "standin" => Ok(OperatorKind::StandIn),
        other => Err(format!(
            "{OPERATOR_ENV}={other:?}: use \"bmo\" or \"stand-in\""
        )),
    }
}

/// The sidecar's image settings: the four defaults when the user set none of them; otherwise
/// exactly the user's (an unset one is passed empty, i.e. omitted, never a default that
/// belongs to another image).
fn image_env(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let user: Vec<(String, Option<String>)> = IMAGE_DEFAULTS
        .iter()
        .map(|(k, _)| ((*k).to_string(), get(k).filter(|v| !v.is_empty())))
        .collect();
    if user.iter().all(|(_, v)| v.is_none()) {
        IMAGE_DEFAULTS
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    } else {
        user.into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn env_or(name: &str, default: &str) -> String {
    env(name)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn describe(plan: &Plan) -> Vec<String> {
    let mut lines = vec![match &plan.target {
        Target::Local => {
            "plan: kubernetes=local (a private kube-apiserver + etcd on loopback)".to_string()
        }
        Target::Cluster {
            kubeconfig,
            namespace,
        } => format!(
            "plan: kubernetes=cluster kubeconfig={} namespace={namespace} (your cluster and its Metal3)",
            kubeconfig
                .as_ref()
                .map(|k| k.display().to_string())
                .unwrap_or_else(|| "<in-cluster or ~/.kube/config>".into())
        ),
    }];
    lines.extend(plan.notes.iter().map(|n| format!("note: {n}")));
    lines
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

/// What a local run owns besides the [`Stack`]: dropped after it, the API server last.
struct Local {
    operator: Operator,
    admin: kube::Client,
    namespace: String,
    server: ApiServer,
}

async fn start_local(kind: OperatorKind) -> e2e::Result<(Local, PathBuf)> {
    let server = match (kind, bmo_build()?) {
        (OperatorKind::Bmo, Some(b)) => ApiServer::start_with(Crds::Bmo(b.src.clone())).await?,
        _ => ApiServer::start().await?,
    };
    let namespace = server.create_namespace("bmh-demo").await?;
    let admin = server.client().await?;
    server
        .apply_file("k8s/base/rbac.yaml", &namespace, false)
        .await?;
    let sidecar_kubeconfig = server
        .service_account_kubeconfig(&namespace, "bmh-webhook-sidecar")
        .await?;
    let operator = Operator::start_with(
        kind,
        &server,
        &namespace,
        &StandInConfig {
            // Slow enough to watch each state in the output; real Metal3 takes minutes.
            step_delay: Duration::from_secs(2),
            ..StandInConfig::default()
        },
    )
    .await?;
    eprintln!("devstack: creating the sample hosts; the operator registers them ...");
    let [a, b, c] = SAMPLE_HOSTS.map(|(name, id)| (name, [(RESOURCE_ID_LABEL, id)]));
    tokio::try_join!(
        operator.add_host(&admin, a.0, &a.1),
        operator.add_host(&admin, b.0, &b.1),
        operator.add_host(&admin, c.0, &c.1),
    )?;
    Ok((
        Local {
            operator,
            admin,
            namespace,
            server,
        },
        sidecar_kubeconfig,
    ))
}

async fn run() -> e2e::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan_only = match args.as_slice() {
        [] => false,
        [a] if a == "--plan" => true,
        _ => return Err("usage: devstack [--plan]".into()),
    };
    let plan = plan(
        env(USE_CLUSTER_ENV).as_deref(),
        env("KUBECONFIG").as_deref(),
        env("KUBERNETES_SERVICE_HOST").is_some(),
        env("K8S_NAMESPACE").as_deref(),
    )?;
    for line in describe(&plan) {
        if plan_only {
            println!("{line}");
        } else {
            eprintln!("devstack: {line}");
        }
    }
    if plan_only {
        return Ok(());
    }

    let port: u16 = env_or("PORT", "5001").parse()?;
    let secret = env_or("WEBHOOK_SECRET", DEVSTACK_SECRET);
    let mut sidecar_env = image_env(env);
    for name in PASSED_THROUGH {
        if let Some(v) = env(name) {
            sidecar_env.push((name.to_string(), v));
        }
    }

    let (local, cluster) = match &plan.target {
        Target::Local => {
            let kind = pick_operator(env(OPERATOR_ENV).as_deref(), bmo_build()?.is_some())?;
            eprintln!("devstack: starting a local API server and the {kind} ...");
            let (local, kubeconfig) = start_local(kind).await?;
            let cluster = Cluster::External {
                kubeconfig: Some(kubeconfig),
                namespace: local.namespace.clone(),
            };
            (Some(local), cluster)
        }
        Target::Cluster {
            kubeconfig,
            namespace,
        } => {
            eprintln!("devstack: starting against your cluster, namespace {namespace} ...");
            let cluster = Cluster::External {
                kubeconfig: kubeconfig.clone(),
                namespace: namespace.clone(),
            };
            (None, cluster)
        }
    };
    let stack = Stack::start(StackOptions {
        cluster,
        listener_port: port,
        listen_on_all_interfaces: false,
        secret: secret.clone(),
        sidecar_env,
        notify_url: env("NOTIFICATION_ENDPOINT").filter(|v| !v.is_empty()),
        log_level: env_or("LOG_LEVEL", "INFO"),
        ..StackOptions::default()
    })
    .await?;

    print_banner(&stack, local.as_ref(), &plan, &secret);

    let mut seen_notifications = 0;
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let stop = kube_harness::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                if let Some(l) = &local {
                    print_host_changes(&l.admin, &l.namespace, &mut states).await;
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
    // Envoy and the sidecar first, then the operator, the API server last.
    drop(stack);
    if let Some(l) = local {
        drop(l.operator);
        drop(l.server);
    }
    eprintln!("devstack: stopped");
    Ok(())
}

fn print_banner(stack: &Stack, local: Option<&Local>, plan: &Plan, secret: &str) {
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
    match local {
        None => println!(
            "Kubernetes               your cluster, namespace {}",
            stack.namespace
        ),
        Some(l) => {
            println!(
                "Kubernetes               local kube-apiserver {} (admin kubeconfig {})",
                l.server.url(),
                l.server.admin_kubeconfig().display()
            );
            println!("namespace                {}", l.namespace);
            println!(
                "sample BareMetalHosts    {}",
                SAMPLE_HOSTS
                    .iter()
                    .map(|(name, id)| format!("{name} (resourceId {id})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match l.operator.kind() {
                OperatorKind::Bmo => {
                    println!("Metal3                   {}", l.operator.describe());
                    if let Some(log) = l.operator.log_path() {
                        println!("baremetal-operator log   {}", log.display());
                    }
                }
                OperatorKind::StandIn => println!(
                    "Metal3                   SIMULATED by the stand-in operator: no real machine is touched"
                ),
            }
        }
    }
    for note in &plan.notes {
        println!("note                     {note}");
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
    if let Some(l) = local {
        println!("Watch the hosts:");
        println!(
            "  kubectl --kubeconfig {} -n {} get bmh -w",
            l.server.admin_kubeconfig().display(),
            l.namespace
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_alone_never_selects_the_cluster() {
        let p = plan(None, Some("/home/me/.kube/prod"), false, Some("metal3")).unwrap();
        assert_eq!(p.target, Target::Local);
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].contains("KUBECONFIG is set (/home/me/.kube/prod)"));
        assert!(p.notes[0].contains("make run CLUSTER=1"));
        for off in ["", "0", "false", "no", "FALSE"] {
            let p = plan(Some(off), Some("/k"), true, None).unwrap();
            assert_eq!(p.target, Target::Local, "{off:?}");
        }
    }

    #[test]
    fn in_a_pod_without_the_opt_in_is_local_too() {
        let p = plan(None, None, true, None).unwrap();
        assert_eq!(p.target, Target::Local);
        assert!(p.notes[0].contains("runs in a pod"));
    }

    #[test]
    fn nothing_set_is_local_without_notes() {
        assert_eq!(
            plan(None, None, false, None).unwrap(),
            Plan {
                target: Target::Local,
                notes: vec![]
            }
        );
    }

    #[test]
    fn the_opt_in_selects_the_cluster_and_its_namespace() {
        for on in ["1", "true", "yes", " TRUE "] {
            let p = plan(Some(on), Some("/k"), false, Some("metal3")).unwrap();
            assert_eq!(
                p.target,
                Target::Cluster {
                    kubeconfig: Some(PathBuf::from("/k")),
                    namespace: "metal3".into()
                },
                "{on:?}"
            );
        }
        let p = plan(Some("1"), None, true, None).unwrap();
        assert_eq!(
            p.target,
            Target::Cluster {
                kubeconfig: None,
                namespace: "default".into()
            }
        );
    }

    #[test]
    fn an_unclear_opt_in_is_refused() {
        let e = plan(Some("maybe"), Some("/k"), false, None).unwrap_err();
        assert!(e.contains("BMH_WEBHOOK_USE_CLUSTER=\"maybe\""), "{e}");
    }

    #[test]
    fn the_real_operator_is_used_when_built() {
        assert_eq!(pick_operator(None, true), Ok(OperatorKind::Bmo));
        assert_eq!(pick_operator(None, false), Ok(OperatorKind::StandIn));
        assert_eq!(
            pick_operator(Some("stand-in"), true),
            Ok(OperatorKind::StandIn)
        );
        assert!(pick_operator(Some("bmo"), false).is_err());
        assert!(pick_operator(Some("ironic"), true).is_err());
    }

    #[test]
    fn image_defaults_only_when_the_user_set_none() {
        let none = image_env(|_| None);
        assert_eq!(
            none,
            IMAGE_DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
        let mine = image_env(|k| (k == "PROVISION_IMAGE").then(|| "https://x/os.raw".to_string()));
        assert_eq!(
            mine,
            [
                ("PROVISION_IMAGE", "https://x/os.raw"),
                ("PROVISION_CHECKSUM", ""),
                ("PROVISION_CHECKSUM_TYPE", ""),
                ("PROVISION_IMAGE_FORMAT", ""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn the_default_secret_is_long_enough_for_the_filter() {
        assert!(DEVSTACK_SECRET.len() >= 32);
    }
}
