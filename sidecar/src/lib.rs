//! BMH sidecar (skeleton; see issue #3).
