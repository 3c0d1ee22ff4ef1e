//! End-to-end tests: the real `wellspring` binary over stdio.

mod support;

mod bad_input;
mod lifecycle;
mod sync;
