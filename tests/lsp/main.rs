//! End-to-end tests: the real `wellspring` binary over stdio.

mod support;

#[path = "../../server/src/model/tests/http_server.rs"]
mod http_server;

mod any_client;
mod bad_input;
mod doctor;
mod faults;
mod features;
mod first_run;
mod lifecycle;
mod privacy;
mod real_model;
mod shared_engine;
mod sync;
