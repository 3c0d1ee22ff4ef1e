//! `wellspring doctor`: what this machine offers and how the configured models would use it.
//! It prints ggml's devices with their free memory, the memory plan for the completion model
//! (and the chat model when it is a separate one, and the draft model when there is one, each
//! planned on what the ones before it leave), and how many windows of a given context the
//! device holds beside the weights.
//!
//! Nothing is downloaded and no model is loaded: the plan comes from the GGUF headers and the
//! devices' figures (`engine::plan_model`). A model that is not on this machine yet is named with
//! the command that fetches it.

use std::path::PathBuf;

use crate::config::Config;
use crate::engine::{
    budget_now, devices, kv_name, plan_draft_model, plan_model, size, Budget, Plan, PlanError,
    Request, Split,
};
use crate::model::{self, ResolveOptions};

#[derive(clap::Args, Debug)]
pub struct Args {}

/// Context sizes the "windows" line counts.
const WINDOW_TOKENS: [u64; 3] = [2048, 8192, 32768];

pub fn run(config: &Config, _args: Args) -> anyhow::Result<()> {
    let model_config = &config.model;
    let devices = devices();
    println!("devices");
    let rows: Vec<[String; 5]> = devices
        .iter()
        .map(|device| {
            [
                device.backend.clone(),
                device.name.clone(),
                device.description.clone(),
                size(device.free_bytes),
                size(device.total_bytes),
            ]
        })
        .collect();
    print_table(&["backend", "name", "description", "free", "total"], &rows);
    let budget = budget_now(model_config);
    match budget.host {
        Some(host) => println!("host memory: {} available", size(host.bytes)),
        None => println!("host memory: unknown"),
    }
    if budget.gpus.is_empty() {
        let why = if model_config.n_gpu_layers == 0 {
            "model.n_gpu_layers is 0"
        } else {
            "no GPU backend device was found"
        };
        println!("the model runs on the CPU ({why})");
    }
    println!();

    let completion_path = local_model(&model_config.path);
    let chat_path = if model_config.chat_path.is_empty() {
        None
    } else {
        Some(local_model(&model_config.chat_path))
    };
    let chat_on_same_model = match (&chat_path, &completion_path) {
        (None, _) => true,
        (Some(Ok(chat)), Ok(completion)) => chat == completion,
        _ => false,
    };
    let mut refusals = Vec::new();
    let completion_plan = match completion_path {
        Ok(path) => {
            let request = Request::completion(model_config, chat_on_same_model);
            report(
                "completion model",
                &path,
                plan_model(&path, &request, &budget),
                &mut refusals,
            )
        }
        Err(message) => {
            println!("completion model: {message}");
            None
        }
    };
    if let Some(plan) = &completion_plan {
        print_windows(plan, &budget);
    }
    let mut left = match &completion_plan {
        Some(plan) => budget.after(plan),
        None => budget.clone(),
    };
    match chat_path {
        Some(Ok(path)) if !chat_on_same_model => {
            println!();
            let chat_plan = report(
                "chat model",
                &path,
                plan_model(&path, &Request::chat(model_config), &left),
                &mut refusals,
            );
            if let Some(plan) = &chat_plan {
                left = left.after(plan);
            }
        }
        Some(Err(message)) => println!("\nchat model: {message}"),
        _ => {}
    }
    if !model_config.draft_path.trim().is_empty() {
        println!();
        match local_model(model_config.draft_path.trim()) {
            Ok(path) => {
                // Its contexts are shaped like the completion model's as planned.
                let planned = match &completion_plan {
                    Some(plan) => plan.apply(model_config),
                    None => model_config.clone(),
                };
                let request = Request::draft(&planned, model_config.n_gpu_layers);
                let planned = plan_draft_model(&path, &request, &left);
                report("draft model", &path, planned, &mut refusals);
            }
            Err(message) => println!("draft model: {message}"),
        }
    }
    if !refusals.is_empty() {
        anyhow::bail!("{}", refusals.join("; "));
    }
    Ok(())
}

/// The local file a spec names, without downloading; `Err` says why there is none and how to
/// get it.
fn local_model(spec: &str) -> Result<PathBuf, String> {
    if crate::engine::http::is_endpoint(spec) {
        return Err(match crate::engine::http::EndpointSpec::parse(spec) {
            Ok(endpoint) => format!(
                "served by {endpoint}; its memory is that server's, and nothing is planned here"
            ),
            Err(error) => error,
        });
    }
    let options = ResolveOptions {
        allow_download: false,
        ..ResolveOptions::default()
    };
    model::resolve(spec, &options)
        .map(|resolved| resolved.path)
        .map_err(|error| error.to_string())
}

/// Prints a model's plan, or why there is none; refusals are collected for the exit status.
fn report(
    role: &str,
    path: &std::path::Path,
    planned: Result<Plan, PlanError>,
    refusals: &mut Vec<String>,
) -> Option<Plan> {
    println!("{role}: {}", path.display());
    let plan = match planned {
        Ok(plan) => plan,
        Err(PlanError::Refused(message)) => {
            println!("  refused: {message}");
            refusals.push(format!("the {role} does not fit: {message}"));
            return None;
        }
        Err(error) => {
            println!("  no plan: {error}");
            return None;
        }
    };
    let layers = if plan.on_gpu() {
        format!(
            "n_gpu_layers = {} of {} ({} of {} repeating layers and the output layer) on {}",
            plan.n_gpu_layers,
            plan.n_layer + 1,
            plan.n_layers_offloaded(),
            plan.n_layer,
            plan.gpus
        )
    } else {
        format!("all {} on the CPU", plan.n_layer)
    };
    let mut rows = vec![
        ["model".to_owned(), plan.model.clone()],
        ["layers".to_owned(), layers],
    ];
    if plan.n_slots > 0 {
        rows.push([
            "slots".to_owned(),
            format!("{} × {} tokens", plan.n_slots, plan.n_ctx_per_slot),
        ]);
    }
    rows.push([
        "kv cache".to_owned(),
        if plan.type_v == plan.kv_cache_type {
            kv_name(plan.kv_cache_type).to_owned()
        } else {
            format!(
                "{} keys, {} values (flash attention is off)",
                kv_name(plan.kv_cache_type),
                kv_name(plan.type_v)
            )
        },
    ]);
    rows.push(["weights".to_owned(), split(plan.weights)]);
    if plan.n_slots > 0 {
        rows.push(["kv per slot".to_owned(), split(plan.kv_per_slot)]);
    }
    if let Some(chat_n_ctx) = plan.chat_n_ctx {
        rows.push([
            "chat kv".to_owned(),
            format!("{} ({chat_n_ctx} tokens)", split(plan.chat_kv)),
        ]);
    }
    rows.push([
        "buffers".to_owned(),
        format!("{} (estimate)", split(plan.buffers)),
    ]);
    if plan.on_gpu() {
        rows.push(["headroom".to_owned(), size(plan.headroom_bytes)]);
    }
    let of_budget = |bytes: u64, budget: Option<u64>| match budget {
        Some(budget) => format!("{} of {}", size(bytes), size(budget)),
        None => size(bytes),
    };
    let mut total = Vec::new();
    if plan.on_gpu() {
        total.push(format!(
            "{} on the GPU",
            of_budget(plan.device_bytes(), plan.device_budget_bytes)
        ));
    }
    total.push(format!(
        "{} in host memory",
        of_budget(plan.host_bytes(), plan.host_budget_bytes)
    ));
    rows.push(["total".to_owned(), total.join(", ")]);
    let width = rows.iter().map(|[label, _]| label.len()).max().unwrap_or(0) + 2;
    for [label, value] in &rows {
        println!("  {label:<width$}{value}");
    }
    for note in &plan.notes {
        println!("  note: {note}");
    }
    Some(plan)
}

/// "N MiB on the GPU + M MiB in host memory", leaving out a side with nothing.
fn split(split: Split) -> String {
    match (split.device_bytes, split.host_bytes) {
        (0, host) => format!("{} in host memory", size(host)),
        (device, 0) => format!("{} on the GPU", size(device)),
        (device, host) => format!(
            "{} on the GPU + {} in host memory",
            size(device),
            size(host)
        ),
    }
}

/// How many windows (slot contexts) of each size fit beside the weights.
fn print_windows(plan: &Plan, budget: &Budget) {
    let holder = if plan.on_gpu() {
        match budget.gpus.len() {
            1 => "this GPU",
            _ => "these GPUs",
        }
    } else {
        "this machine"
    };
    for n_tokens in WINDOW_TOKENS {
        match plan.windows(n_tokens) {
            u64::MAX => println!("{holder} holds any number of windows of {n_tokens} tokens"),
            n_windows => println!("{holder} holds {n_windows} windows of {n_tokens} tokens each"),
        }
    }
    println!(
        "  (a window is one user's or one open file's slot, with a {} KV cache, beside the weights, the buffers and the chat context)",
        kv_name(plan.kv_cache_type)
    );
}

/// Prints rows under a header, each column as wide as its widest cell.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("  {}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        println!("  (ggml lists no device)");
    }
}
