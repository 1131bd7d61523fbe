//! proxy-wasm adapter (skeleton; see issue #2).
