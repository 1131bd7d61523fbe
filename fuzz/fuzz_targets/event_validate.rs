//! The reservation-event validator on arbitrary bodies: `event::validate` (the sidecar's) and
//! `event::check_body` (the filter's borrowing twin) must agree: the same error, or, for a valid
//! event, the same replay-rule verdict as `check_freshness`, at several clocks including the
//! extremes (overflow). The single-field checks run on the raw text as well.
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
                assert_eq!(filter, sidecar, "filter and sidecar disagree on freshness");
                if filter.is_ok() && ev.event_type == event::EventType::Start {
                    // A START accepted by the delivery rule has a resource still to provision.
                    assert!(
                        ev.events
                            .iter()
                            .any(|r| !event::start_expired(&r.event_end, now, skew)),
                        "a START accepted whose every resource has ended"
                    );
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = event::check_username(text);
        let _ = event::check_email(text);
        let _ = event::check_ssh_key(text);
        for (now, _, skew) in CLOCKS {
            let _ = event::start_expired(text, now, skew);
        }
    }
});
