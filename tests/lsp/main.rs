//! The integration tests, in one binary: the real `wellspring` binary over stdio and on its
//! command line, and the checks on the source tree itself (`tidy`).

mod support;

#[path = "../../server/src/model/tests/http_server.rs"]
mod http_server;

mod any_client;
mod bad_input;
mod doctor;
mod faults;
mod features;
mod first_run;
mod inference_server;
mod lifecycle;
mod model_cli;
mod privacy;
mod real_model;
mod shared_engine;
mod sync;
mod tidy;
