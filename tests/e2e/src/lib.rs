//! The whole system wired together, for the end-to-end tests and for `make run`.
