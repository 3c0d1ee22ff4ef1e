//! End-to-end tests: the real `wellspring` binary over stdio.

mod support;

mod bad_input;
mod features;
mod lifecycle;
mod real_model;
mod sync;
