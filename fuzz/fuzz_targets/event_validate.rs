//! The reservation-message reader on arbitrary bodies: `event::validate` and `event::check_body`
//! (what the filter runs and hands the sidecar) must agree: the same error, or, for a valid
//! message, the same replay-rule verdict as `check_freshness`, at several clocks including the
//! extremes (overflow); the owned copy the sidecar keeps equals the borrowed one. The SSH key
//! judgement runs on the raw text as well.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_core::event;
use webhook_fuzz::FIXTURE_TS;

/// (now, replay window, clock skew): the fixtures' era, ten years on with a window, the epoch,
/// and the extremes of every type.
const CLOCKS: [(i64, u64, u64); 6] = [
    (FIXTURE_TS, 0, 300),
    (FIXTURE_TS + 315_360_000, 600, 0),
    (0, 0, 0),
    (i64::MAX, u64::MAX, u64::MAX),
    (i64::MIN, u64::MAX, 0),
    (FIXTURE_TS, 1, u64::MAX),
];

fuzz_target!(|data: &[u8]| {
    let validated = event::validate(data);
    for (now, window, skew) in CLOCKS {
        let filter = event::check_body(data, now, window, skew);
        match &validated {
            Err(e) => assert_eq!(
                filter.as_ref().err(),
                Some(e),
                "filter and sidecar disagree"
            ),
            Ok(ev) => {
                let sidecar = event::check_freshness(ev, now, window, skew);
                assert_eq!(
                    filter.as_ref().err(),
                    sidecar.as_ref().err(),
                    "filter and sidecar disagree on freshness"
                );
                if let Ok(m) = &filter {
                    assert_eq!(m, ev, "check_body read another message");
                }
                if filter.is_ok()
                    && ev.event_type == event::EventType::Start
                    && !ev.reservations.is_empty()
                {
                    // A START accepted by the delivery rule has a resource still to provision.
                    assert!(
                        ev.reservations.iter().any(|r| r
                            .end
                            .as_deref()
                            .is_some_and(|end| !event::start_expired(end, now, skew))),
                        "a START accepted whose every resource has ended"
                    );
                }
            }
        }
    }
    if let Ok(ev) = &validated {
        assert_eq!(&ev.clone().into_owned(), ev, "the owned copy differs");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = event::check_ssh_key(Some(text));
        for (now, _, skew) in CLOCKS {
            let _ = event::start_expired(text, now, skew);
        }
    }
});
