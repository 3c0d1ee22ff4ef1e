//! `wellspring doctor`: the devices, the memory plan, and a refusal that says what would fit.

use std::process::{Command, Output};

use crate::support::tiny_model;

/// Runs `wellspring --model <tiny model> ARGS... doctor` with no configuration file of the user's.
fn doctor(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_wellspring"))
        .arg("--model")
        .arg(tiny_model())
        .args(args)
        .arg("doctor")
        .env("XDG_CONFIG_HOME", home.path())
        .env("WELLSPRING_LOG", "warn")
        .output()
        .expect("run wellspring doctor")
}

#[test]
fn doctor_prints_the_devices_and_the_plan() {
    let output = doctor(&["--n-ctx", "4096"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let device_rows: Vec<&str> = stdout
        .lines()
        .skip_while(|line| *line != "devices")
        .skip(2)
        .take_while(|line| line.starts_with("  "))
        .collect();
    assert!(
        device_rows
            .iter()
            .any(|row| row.trim_start().starts_with("CPU ")),
        "{stdout}"
    );
    assert!(stdout.contains("\nhost memory: "), "{stdout}");
    for expected in [
        &format!("completion model: {}", tiny_model().display()),
        "  model        random-tiny F16\n",
        "  slots        4 × 1024 tokens\n",
        "  kv cache     f16\n",
        // The tiny model's cache: 2 layers of one 64-wide head, keys and values in F16.
        "  kv per slot  1 MiB",
        "  chat kv      2 MiB",
        " windows of 2048 tokens each\n",
        " windows of 32768 tokens each\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in\n{stdout}");
    }
}

#[test]
fn doctor_plans_a_draft_model_in_the_models_shape_on_what_they_leave() {
    let tiny = tiny_model();
    let output = doctor(&["--n-ctx", "4096", "--draft-model", tiny.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let (completion, draft) = stdout
        .split_once(&format!("\ndraft model: {}\n", tiny.display()))
        .expect("a draft model section");
    // A sequence per slot of the model, in its KV type, and a chat context.
    for expected in [
        "  slots        4 × 1024 tokens\n",
        "  kv cache     f16\n",
        "  chat kv      2 MiB",
    ] {
        assert!(completion.contains(expected), "{expected:?} in\n{stdout}");
        assert!(draft.contains(expected), "{expected:?} in\n{stdout}");
    }
    // On what the model leaves: its budget is smaller by the model's total.
    let budget = |section: &str| -> String {
        let total = section
            .lines()
            .find(|line| line.starts_with("  total "))
            .unwrap_or_else(|| panic!("a total in\n{stdout}"));
        total.rsplit(" of ").next().unwrap().to_owned()
    };
    assert_ne!(budget(completion), budget(draft), "{stdout}");
}

#[test]
fn doctor_refuses_a_context_the_machine_cannot_hold_and_says_what_fits() {
    let output = doctor(&["--n-ctx", "4000000000", "--n-gpu-layers", "0"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("  refused: a context of 4000000000 tokens needs at least "),
        "{stdout}"
    );
    assert!(
        stdout.contains("lower model.n_ctx or model.n_slots (the KV cache grows with both)"),
        "{stdout}"
    );
    // Four slots of a billion tokens each are too many; fewer, or one smaller, would fit.
    assert!(stdout.contains(" tokens fit"), "{stdout}");
    assert!(
        stderr.contains("the completion model does not fit: a context of 4000000000 tokens"),
        "{stderr}"
    );
}

#[test]
fn doctor_names_the_command_that_fetches_a_model_it_does_not_have() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wellspring"))
        .args(["--model", "hf:acme/coder-GGUF/coder.gguf", "doctor"])
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_CACHE_HOME", home.path())
        .env("WELLSPRING_LOG", "warn")
        .output()
        .expect("run wellspring doctor");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("completion model: hf:acme/coder-GGUF/coder.gguf is not downloaded yet: run `wellspring model pull hf:acme/coder-GGUF/coder.gguf`"),
        "{stdout}"
    );
}
