//! The machine as the memory plan sees it: ggml's backend devices with their free memory, and the
//! host memory available; and [`plan_model`], which plans a model file for a configuration
//! ([`plan_draft_model`] a draft model's).
//!
//! The planning itself is `plan.rs`, pure and tested on its own; this module only reads the
//! figures (through `llama_cpp_2`, which is why it lives in `engine/`) and the GGUF header.

use std::path::Path;

use llama_cpp_2::LlamaBackendDeviceType;

use super::memory::Available;
use super::plan::{self, Budget, Device, DeviceKind, ModelShape, Plan, Request};
use crate::config::ModelConfig;

/// Why a model could not be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlanError {
    /// The configuration does not fit; the message says what would.
    Refused(String),
    /// The file cannot be read as a GGUF model (loading it reports the same, in its own words).
    Model(String),
    /// The header lacks what the plan needs; the model is loaded as configured.
    Unplannable(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Refused(message)
            | PlanError::Model(message)
            | PlanError::Unplannable(message) => f.write_str(message),
        }
    }
}

/// Every device ggml offers (CPU included), with its memory now.
pub(crate) fn devices() -> Vec<Device> {
    // In a `dynamic-backends` build the device list is empty until the backends are loaded,
    // which initialising llama.cpp does; an error here shows as an empty list.
    let _ = super::backend::llama::llama_backend();
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|device| Device {
            name: device.name,
            description: device.description,
            backend: device.backend,
            kind: match device.device_type {
                LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
                LlamaBackendDeviceType::Gpu => DeviceKind::Gpu,
                LlamaBackendDeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
                LlamaBackendDeviceType::Accelerator | LlamaBackendDeviceType::Unknown => {
                    DeviceKind::Other
                }
            },
            free_bytes: u64::try_from(device.memory_free).unwrap_or(u64::MAX),
            total_bytes: u64::try_from(device.memory_total).unwrap_or(u64::MAX),
        })
        .collect()
}

/// The memory a plan may use now: the GPUs llama.cpp would offload to (none when
/// `n_gpu_layers` is 0) and the host memory available.
pub(crate) fn budget_now(config: &ModelConfig) -> Budget {
    let mut budget = Budget::new(&devices(), Available::now());
    if config.n_gpu_layers == 0 {
        budget.gpus.clear();
    }
    budget
}

/// Plans the model at `path` for `request` within `budget`.
pub(crate) fn plan_model(
    path: &Path,
    request: &Request,
    budget: &Budget,
) -> Result<Plan, PlanError> {
    plan::plan(&model_shape(path)?, budget, request).map_err(PlanError::Refused)
}

/// Plans the draft model at `path` for `request` (from [`Request::draft`]) within `budget` (see
/// [`plan::plan_draft`]).
pub(crate) fn plan_draft_model(
    path: &Path,
    request: &Request,
    budget: &Budget,
) -> Result<Plan, PlanError> {
    plan::plan_draft(&model_shape(path)?, budget, request).map_err(PlanError::Refused)
}

/// The shape the plan needs, from the GGUF header of the model at `path`.
pub(crate) fn model_shape(path: &Path) -> Result<ModelShape, PlanError> {
    let summary =
        crate::model::inspect(path).map_err(|error| PlanError::Model(error.to_string()))?;
    ModelShape::from_summary(&summary).map_err(|reason| {
        PlanError::Unplannable(format!("{} cannot be planned: {reason}", path.display()))
    })
}
