//! Wellspring's fuzz targets, one test binary so the server library is linked once.
//!
//! Each `#[test]` is one target and runs for `WELLSPRING_FUZZ_SECS` (4 by default); see
//! `wellspring_fuzz` for the settings and `docs/reliability.md` for what each target checks.

#[path = "../../../tests/lsp/support.rs"]
mod support;

mod convert;
mod dispatch;
mod documents;
mod postprocess;
mod stdio_edits;
mod transport;
