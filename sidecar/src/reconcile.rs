//! The reconciler: one kube-runtime `Controller` (one watch over the BMHs of the namespace)
//! that moves every host one [`Step`] at a time towards what its annotations ask for. Watch
//! events and requeues (resync, timeouts, notification retries) drive it; the annotations are
//! the only state, so a restarted sidecar or another replica picks up where this one stopped.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::DynamicObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::cloudinit;
use crate::error::{Error, Result};
use crate::k8s::{SecretState, Write};
use crate::metrics::{Delivery, LogDelivery, LogKind, StepKind};
use crate::model::{AnnotationPatch, Host, Phase};
use crate::notify::Notification;
use crate::plan::{
    ClaimCheck, Step, Transition, claim_notification, next_step, owed_satisfied, refused,
    transition,
};
use crate::state::AppState;

/// How long a replica's claim on sending a notification lasts: one worst-case round of
/// delivery attempts (and its webhook log) plus a margin, so a live sender always renews it in
/// time and no other replica starts the same notification meanwhile.
pub fn claim_ttl(state: &AppState) -> Duration {
    state.notifier.worst_case_round() + Duration::from_secs(30)
}

/// Re-check delay after a lost resourceVersion race (the newer version also triggers a run).
const AFTER_CONFLICT: Duration = Duration::from_millis(500);

/// The controller: one watch over the BMHs of the namespace. Its store is the webhook's cache.
pub fn controller(state: &AppState) -> Controller<DynamicObject> {
    Controller::new_with(
        state.kube.bmh_api(),
        watcher::Config::default(),
        state.kube.resource(),
    )
}

/// Runs `controller` until `shutdown` completes.
pub async fn run(
    controller: Controller<DynamicObject>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(state))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile run ended with an error");
            }
        })
        .await;
}

fn error_policy(obj: Arc<DynamicObject>, err: &Error, state: Arc<AppState>) -> Action {
    state.metrics.count_reconcile_error(err.error_type());
    tracing::warn!(bmh = obj.metadata.name.as_deref().unwrap_or_default(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Re-check delay after the API server refused a write for good (an operator must fix the
/// host; looking again often would only repeat the refusal).
const AFTER_REFUSAL: Duration = Duration::from_secs(60);

/// One reconcile of one host, timed by the step it chose.
pub async fn reconcile(obj: Arc<DynamicObject>, state: Arc<AppState>) -> Result<Action> {
    let started = std::time::Instant::now();
    let host = Host::from_object(&state.keys, &obj);
    let now = Timestamp::now();
    let step = next_step(&state.policy, &host, now);
    tracing::debug!(bmh = %host.key(), phase = ?host.phase, state = %host.status.state, ?step, "reconcile");
    let kind = StepKind::of(&step);
    let done = carry_out(&state, &host, step, now).await;
    state
        .metrics
        .observe_reconcile(kind, done.is_ok(), started.elapsed());
    done
}

async fn carry_out(state: &AppState, host: &Host, step: Step, now: Timestamp) -> Result<Action> {
    let resync = state.config.resync;
    match step {
        Step::Idle => Ok(Action::await_change()),
        Step::Wait(d) => Ok(Action::requeue(d)),
        Step::Provision(patch) => provision(state, host, &patch).await,
        Step::Release(patch) => {
            let w = state.kube.patch_bmh(&host.name, &patch).await?;
            match w {
                Write::Done(_) => {
                    tracing::info!(bmh = %host.key(), "image and userData removed, power off asked");
                    state.kube.delete_secret(host).await?;
                }
                Write::Refused(ref message) => {
                    let t = refused(&state.keys, host, "release", message, now);
                    return apply_transition(state, host, &t).await;
                }
                Write::Conflict | Write::Gone => {}
            }
            Ok(after(w, resync))
        }
        Step::Stop(patch) => {
            let w = state.kube.patch_bmh(&host.name, &patch).await?;
            match &w {
                Write::Done(_) => {
                    tracing::info!(bmh = %host.key(), "failed reservation: image and userData removed so Metal3 stops deploying it");
                    state.kube.delete_secret(host).await?;
                }
                Write::Refused(message) => {
                    // The host breaks Metal3's rules; an operator must fix it. Do not hold the
                    // failure notification back meanwhile.
                    tracing::warn!(bmh = %host.key(), %message, "cannot remove the failed reservation's image");
                    if state.notifier.enabled() && host.notified != Some(Phase::Failed) {
                        notify(state, host, Phase::Failed).await?;
                    }
                }
                Write::Conflict | Write::Gone => {}
            }
            Ok(after(w, resync))
        }
        Step::FinishRelease(t) => {
            state.kube.delete_secret(host).await?;
            apply_transition(state, host, &t).await
        }
        Step::Transition(t) => apply_transition(state, host, &t).await,
        Step::Notify(phase) => notify(state, host, phase).await,
    }
}

/// Writes the userData Secret, then the spec; a refusal of either fails the reservation.
async fn provision(state: &AppState, host: &Host, patch: &serde_json::Value) -> Result<Action> {
    let Some(holder) = &host.holder else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let user_data = cloudinit::render(
        holder,
        &state.config.login_user,
        state.config.operator.as_ref(),
    )?;
    match state.kube.ensure_secret(host, &user_data).await {
        Ok(SecretState::Ready) => {}
        Ok(SecretState::Stale) => return Ok(Action::requeue(AFTER_CONFLICT)),
        Err(e @ Error::ForeignSecret { .. }) => {
            let t = transition(&state.keys, host, Phase::Failed, &e.to_string(), now);
            return apply_transition(state, host, &t).await;
        }
        Err(e) => return Err(e),
    }
    let w = state.kube.patch_bmh(&host.name, patch).await?;
    match &w {
        Write::Done(_) => {
            tracing::info!(bmh = %host.key(), event_id = %holder.event_id, "image, userData, online and consumerRef written");
        }
        Write::Refused(message) => {
            let t = refused(&state.keys, host, "provisioning spec", message, now);
            return apply_transition(state, host, &t).await;
        }
        Write::Conflict | Write::Gone => {}
    }
    Ok(after(w, state.config.resync))
}

fn after(w: Write, resync: Duration) -> Action {
    match w {
        Write::Done(_) => Action::requeue(resync),
        Write::Conflict => Action::requeue(AFTER_CONFLICT),
        Write::Gone => Action::await_change(),
        Write::Refused(_) => Action::requeue(AFTER_REFUSAL),
    }
}

async fn apply_transition(state: &AppState, host: &Host, t: &Transition) -> Result<Action> {
    let w = state.kube.patch_bmh(&host.name, &t.patch).await?;
    match &w {
        Write::Done(_) => {
            state.metrics.count_transition(t.to);
            tracing::info!(bmh = %host.key(), from = ?host.phase, to = %t.to, detail = %t.detail, "phase changed");
        }
        Write::Refused(message) => {
            tracing::warn!(bmh = %host.key(), to = %t.to, %message, "the API server refused the phase change; an operator must fix the host");
        }
        Write::Conflict | Write::Gone => {}
    }
    Ok(after(w, state.config.resync))
}

async fn notify(state: &AppState, host: &Host, phase: Phase) -> Result<Action> {
    let Some(n) = Notification::for_host(host, phase) else {
        return Ok(Action::await_change());
    };
    // Only one replica sends: claim the notification first (resourceVersion precondition).
    match claim_notification(
        &state.keys,
        host,
        &state.config.replica_id,
        claim_ttl(state),
        Timestamp::now(),
    ) {
        ClaimCheck::Wait(d) => return Ok(Action::requeue(d)),
        ClaimCheck::Take(patch) => match state.kube.patch_bmh(&host.name, &patch).await? {
            Write::Done(_) => {}
            w @ (Write::Conflict | Write::Gone | Write::Refused(_)) => {
                return Ok(after(w, state.config.resync));
            }
        },
    }
    let started = std::time::Instant::now();
    let delivered = state.notifier.deliver(&n).await;
    let since_phase = host
        .phase_since
        .and_then(|t| Timestamp::now().duration_since(t).try_into().ok());
    let delivery = match &delivered {
        Ok(()) => Delivery::Delivered,
        Err(e) if e.retryable() => Delivery::Retrying,
        Err(_) => Delivery::Rejected,
    };
    state
        .metrics
        .observe_notification(phase, delivery, started.elapsed(), since_phase);
    match delivery {
        Delivery::Delivered | Delivery::Rejected => {
            match &delivered {
                Err(e) => {
                    tracing::error!(bmh = %host.key(), outcome = %phase, key = %n.idempotency_key(), error = %e, "notification not delivered, and not retried: sending it again cannot help (a 401 from reservation-be means a wrong WEBHOOK_SECRET or webhook id)");
                }
                Ok(()) => {
                    tracing::info!(bmh = %host.key(), outcome = %phase, key = %n.idempotency_key(), "notification delivered");
                }
            }
            // The outcome's webhook log, within the same claim (best effort).
            if let Some(sent) = state.notifier.log_outcome(&n).await {
                let logged = match &sent {
                    Ok(()) => LogDelivery::Delivered,
                    Err(e) => {
                        tracing::warn!(bmh = %host.key(), error = %e, "webhook log not delivered");
                        LogDelivery::Failed
                    }
                };
                state.metrics.count_webhook_log(LogKind::Outcome, logged);
            }
            // Recorded without precondition: whatever changed meanwhile, this phase's
            // notification has been delivered.
            let owed = host.owed.as_ref().is_some_and(|o| o.outcome == phase);
            let mut patch = AnnotationPatch::unconditional(&state.keys).claim(None);
            patch = if owed {
                patch.owed(None)
            } else {
                patch.notified(Some(phase))
            };
            let patch = patch.build();
            let w = state.kube.patch_bmh(&host.name, &patch).await?;
            if let Write::Done(now) = &w
                && let Some(clear) = owed_satisfied(
                    &state.keys,
                    &Host::from_object(&state.keys, now),
                    phase,
                    &n.event_id,
                )
            {
                // Lost race (409): the owed copy goes out again, deduplicated by its key.
                let _ = state.kube.patch_bmh(&host.name, &clear).await?;
            }
            Ok(after(w, state.config.resync))
        }
        Delivery::Retrying => {
            if let Err(e) = &delivered {
                tracing::warn!(bmh = %host.key(), error = %e, "notification not delivered yet; will retry");
            }
            Ok(Action::requeue(Duration::from_secs(5)))
        }
    }
}
