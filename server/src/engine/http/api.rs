//! The inference servers' HTTP APIs as data: which endpoint a model spec names, the body of a
//! completion or chat request in each API's shape, and what one line of a streamed answer says.
//!
//! Pure: no IO. The network is `client.rs`'s; the engine's rules (stop strings, budgets,
//! latest-wins) are `mod.rs`'s.

use serde_json::{json, Value};

use crate::engine::vocab::FimTokenTexts;
use crate::engine::{ChatMessage, SamplingConfig};

/// Which API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// llama.cpp's server, native `/completion` (slots, `cache_prompt`, `/tokenize`, `/props`).
    LlamaServer,
    /// An OpenAI-compatible `/v1/completions` (vLLM, TGI, LM Studio, llama-server's `/v1`).
    OpenAi,
    /// Ollama's `/api/generate` with `raw: true`.
    Ollama,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::LlamaServer => "llama-server",
            Api::OpenAi => "openai",
            Api::Ollama => "ollama",
        }
    }
}

/// A model served over HTTP, as written in `model.path` or `model.chat_path`:
/// `llama-server+http://HOST:PORT`, `openai+https://HOST/v1#MODEL`, `ollama+http://HOST:11434#MODEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub api: Api,
    /// The URL requests' paths are appended to, without a trailing `/`.
    pub base_url: String,
    /// The model name the server knows the model by (required by `openai` and `ollama`).
    pub model: Option<String>,
}

impl std::fmt::Display for EndpointSpec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}+{}", self.api.name(), self.base_url)?;
        if let Some(model) = &self.model {
            write!(formatter, "#{model}")?;
        }
        Ok(())
    }
}

/// Whether `spec` names an endpoint rather than a model file (it may still be a malformed one).
pub fn is_endpoint(spec: &str) -> bool {
    let spec = spec.trim();
    ["llama-server+", "openai+", "ollama+"]
        .iter()
        .any(|prefix| spec.starts_with(prefix))
        || spec.starts_with("http://")
        || spec.starts_with("https://")
}

impl EndpointSpec {
    pub fn parse(spec: &str) -> Result<EndpointSpec, String> {
        let spec = spec.trim();
        let usage = "write llama-server+http://HOST:PORT, openai+https://HOST/v1#MODEL or ollama+http://HOST:11434#MODEL";
        let (api, rest) = if let Some(rest) = spec.strip_prefix("llama-server+") {
            (Api::LlamaServer, rest)
        } else if let Some(rest) = spec.strip_prefix("openai+") {
            (Api::OpenAi, rest)
        } else if let Some(rest) = spec.strip_prefix("ollama+") {
            (Api::Ollama, rest)
        } else {
            return Err(format!(
                "{spec:?} does not say which API the server speaks: {usage}"
            ));
        };
        let (url, model) = match rest.split_once('#') {
            Some((url, model)) => (url, Some(model.trim()).filter(|model| !model.is_empty())),
            None => (rest, None),
        };
        let Some(after_scheme) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return Err(format!(
                "{spec:?}: the server's URL must start with http:// or https://"
            ));
        };
        let host = after_scheme.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{spec:?}: the URL names no host"));
        }
        if host.contains('@') {
            return Err(format!(
                "{spec:?}: credentials do not go in the URL (they would show in logs); put the token in WELLSPRING_API_TOKEN or model.api_token_file"
            ));
        }
        if url.contains('?') {
            return Err(format!("{spec:?}: the URL takes no query"));
        }
        if model.is_none() && api != Api::LlamaServer {
            return Err(format!(
                "{spec:?}: name the model after a #, as the server knows it ({}#MODEL)",
                url
            ));
        }
        Ok(EndpointSpec {
            api,
            base_url: url.trim_end_matches('/').to_owned(),
            model: model.map(str::to_owned),
        })
    }
}

/// The FIM markers of a model family, as text in a raw prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FimMarkers {
    pub family: &'static str,
    pub prefix: &'static str,
    pub suffix: &'static str,
    pub middle: &'static str,
    /// Repo-level FIM: a file separator followed by the file's path, and the repository's name.
    pub file_sep: Option<&'static str>,
    pub repo_name: Option<&'static str>,
}

impl FimMarkers {
    /// The markers as the token texts a prompt is rendered with.
    pub fn texts(&self) -> FimTokenTexts {
        FimTokenTexts {
            prefix: Some(self.prefix.to_owned()),
            suffix: Some(self.suffix.to_owned()),
            middle: Some(self.middle.to_owned()),
            file_sep: self.file_sep.map(str::to_owned),
            repo_name: self.repo_name.map(str::to_owned),
        }
    }
}

/// The families whose FIM markers Wellspring knows, Qwen2.5-Coder (the bundled vocabulary's) first.
pub const FIM_FAMILIES: [FimMarkers; 4] = [
    FimMarkers {
        family: "qwen",
        prefix: "<|fim_prefix|>",
        suffix: "<|fim_suffix|>",
        middle: "<|fim_middle|>",
        file_sep: Some("<|file_sep|>"),
        repo_name: Some("<|repo_name|>"),
    },
    FimMarkers {
        family: "starcoder",
        prefix: "<fim_prefix>",
        suffix: "<fim_suffix>",
        middle: "<fim_middle>",
        file_sep: Some("<file_sep>"),
        repo_name: Some("<repo_name>"),
    },
    FimMarkers {
        family: "deepseek",
        prefix: "<｜fim▁begin｜>",
        suffix: "<｜fim▁hole｜>",
        middle: "<｜fim▁end｜>",
        file_sep: None,
        repo_name: None,
    },
    FimMarkers {
        family: "codellama",
        prefix: "<PRE>",
        suffix: "<SUF>",
        middle: "<MID>",
        file_sep: None,
        repo_name: None,
    },
];

/// The family named `name` (`qwen`, `starcoder`, `deepseek`, `codellama`).
pub fn fim_family(name: &str) -> Option<&'static FimMarkers> {
    FIM_FAMILIES.iter().find(|markers| markers.family == name)
}

/// The family a served model's name suggests (`qwen2.5-coder:1.5b`, `bigcode/starcoder2-3b`).
pub fn fim_family_of_name(model_name: &str) -> Option<&'static FimMarkers> {
    let name = model_name.to_lowercase();
    let family = if name.contains("qwen") {
        "qwen"
    } else if name.contains("starcoder") {
        "starcoder"
    } else if name.contains("deepseek") {
        "deepseek"
    } else if name.contains("codellama") || name.contains("code-llama") {
        "codellama"
    } else {
        return None;
    };
    fim_family(family)
}

/// One streamed completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionCall<'a> {
    /// The whole prompt as text, FIM markers included.
    pub prompt: &'a str,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub sampling: SamplingConfig,
    /// llama-server's slot for the document, so documents (and windows) keep their caches.
    pub id_slot: Option<u32>,
    /// llama-server stops generating after this long once a line is complete.
    pub t_max_predict_ms: Option<u64>,
    /// The context Ollama should give the model (its default is smaller than most prompts).
    pub n_ctx: u32,
}

/// The path and JSON body of a streamed completion request in `api`'s shape.
pub fn completion_request(
    api: Api,
    model: Option<&str>,
    call: &CompletionCall<'_>,
) -> (&'static str, Value) {
    let sampling = &call.sampling;
    match api {
        Api::LlamaServer => {
            let mut body = json!({
                "prompt": call.prompt,
                "n_predict": call.max_tokens,
                "stream": true,
                "cache_prompt": true,
                "temperature": sampling.temperature,
                "top_k": sampling.top_k,
                "top_p": sampling.top_p,
                "seed": sampling.seed,
                "stop": call.stop,
                // Every chunk carries the figures so far, since the stream is often closed
                // before its last chunk (a suggestion found complete, a newer keystroke).
                "timings_per_token": true,
                "return_tokens": false,
            });
            if let Some(id_slot) = call.id_slot {
                body["id_slot"] = json!(id_slot);
            }
            if let Some(t_max_predict_ms) = call.t_max_predict_ms {
                body["t_max_predict_ms"] = json!(t_max_predict_ms);
            }
            ("/completion", body)
        }
        Api::OpenAi => {
            let mut body = json!({
                "model": model,
                "prompt": call.prompt,
                "max_tokens": call.max_tokens,
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "seed": sampling.seed,
            });
            // The API allows at most four stop sequences; the rest are applied here.
            if !call.stop.is_empty() {
                body["stop"] = json!(call.stop.iter().take(4).collect::<Vec<_>>());
            }
            ("/completions", body)
        }
        Api::Ollama => {
            let mut options = ollama_options(call.max_tokens, sampling);
            options["stop"] = json!(call.stop);
            options["num_ctx"] = json!(call.n_ctx);
            (
                "/api/generate",
                json!({
                    "model": model,
                    "prompt": call.prompt,
                    "raw": true,
                    "stream": true,
                    "options": options,
                }),
            )
        }
    }
}

/// Ollama's generation options for `max_tokens` tokens sampled as `sampling` says.
fn ollama_options(max_tokens: u32, sampling: &SamplingConfig) -> Value {
    json!({
        "num_predict": max_tokens,
        "temperature": sampling.temperature,
        "top_k": sampling.top_k,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
    })
}

/// One streamed chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCall<'a> {
    pub messages: &'a [ChatMessage],
    pub max_tokens: u32,
    pub sampling: SamplingConfig,
    /// A GBNF grammar: llama-server follows it; the other APIs have no such parameter.
    pub grammar: Option<&'a str>,
}

/// The path and JSON body of a streamed chat request in `api`'s shape.
pub fn chat_request(api: Api, model: Option<&str>, call: &ChatCall<'_>) -> (&'static str, Value) {
    let messages: Vec<Value> = call
        .messages
        .iter()
        .map(|message| json!({"role": message.role, "content": message.content}))
        .collect();
    let sampling = &call.sampling;
    match api {
        Api::LlamaServer | Api::OpenAi => {
            let mut body = json!({
                "messages": messages,
                "max_tokens": call.max_tokens,
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "seed": sampling.seed,
            });
            if api == Api::OpenAi {
                body["model"] = json!(model);
                return ("/chat/completions", body);
            }
            body["timings_per_token"] = json!(true);
            body["cache_prompt"] = json!(true);
            body["top_k"] = json!(sampling.top_k);
            if let Some(grammar) = call.grammar {
                body["grammar"] = json!(grammar);
            }
            ("/v1/chat/completions", body)
        }
        Api::Ollama => (
            "/api/chat",
            json!({
                "model": model,
                "messages": messages,
                "stream": true,
                "options": ollama_options(call.max_tokens, sampling),
            }),
        ),
    }
}

/// What the server said about a request's cost, in whatever it reported so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerFigures {
    /// Prompt tokens evaluated for this request (llama-server's `prompt_n`, Ollama's
    /// `prompt_eval_count`, OpenAI's `prompt_tokens` less the cached ones).
    pub n_evaluated: Option<u32>,
    /// Prompt tokens the server's cache already held (llama-server's `cache_n`, OpenAI's
    /// `cached_tokens`).
    pub n_cached: Option<u32>,
    pub n_generated: Option<u32>,
    pub t_prefill_ms: Option<f64>,
    pub t_decode_ms: Option<f64>,
}

impl ServerFigures {
    /// Takes every figure `newer` has.
    pub fn update(&mut self, newer: ServerFigures) {
        self.n_evaluated = newer.n_evaluated.or(self.n_evaluated);
        self.n_cached = newer.n_cached.or(self.n_cached);
        self.n_generated = newer.n_generated.or(self.n_generated);
        self.t_prefill_ms = newer.t_prefill_ms.or(self.t_prefill_ms);
        self.t_decode_ms = newer.t_decode_ms.or(self.t_decode_ms);
    }
}

/// What one line of a streamed answer said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    pub text: String,
    /// The stream is over.
    pub done: bool,
    /// The answer is complete (OpenAI's `finish_reason`; figures may follow before the stream
    /// is over).
    pub finished: bool,
    /// It ended because the answer reached the requested number of tokens.
    pub limit: bool,
    pub figures: ServerFigures,
}

/// Reads one line of a streamed completion (`chat` false) or chat answer: server-sent events
/// (`data: {…}`) for llama-server and OpenAI, one JSON object per line for Ollama. `Ok(None)` for
/// lines that carry nothing (blank lines, SSE comments and event names); an error the server
/// streamed is an `Err` with its message.
pub fn parse_line(api: Api, chat: bool, line: &str) -> Result<Option<Chunk>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let json_text = match api {
        Api::LlamaServer | Api::OpenAi => {
            if let Some(error) = line.strip_prefix("error:") {
                return Err(error_message(error.trim()));
            }
            let Some(data) = line.strip_prefix("data:") else {
                return Ok(None);
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                return Ok(Some(Chunk {
                    done: true,
                    ..Chunk::default()
                }));
            }
            data
        }
        Api::Ollama => line.trim(),
    };
    if json_text.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(json_text).map_err(|error| {
        format!("the server sent a line that is not JSON ({error}): {json_text:.200}")
    })?;
    if value.get("error").is_some() {
        return Err(error_message_of(&value));
    }
    let mut chunk = Chunk::default();
    match api {
        Api::LlamaServer if !chat => {
            chunk.text = str_at(&value, &["content"]).to_owned();
            chunk.done = value.get("stop").and_then(Value::as_bool) == Some(true);
            chunk.limit = str_at(&value, &["stop_type"]) == "limit";
            chunk.figures = llama_timings(&value);
        }
        Api::LlamaServer | Api::OpenAi => {
            let choice = value.get("choices").and_then(|choices| choices.get(0));
            if let Some(choice) = choice {
                let path: &[&str] = if chat {
                    &["delta", "content"]
                } else {
                    &["text"]
                };
                chunk.text = str_at(choice, path).to_owned();
                chunk.finished = choice
                    .get("finish_reason")
                    .is_some_and(|reason| !reason.is_null());
                chunk.limit = str_at(choice, &["finish_reason"]) == "length";
            }
            if let Some(usage) = value.get("usage").filter(|usage| !usage.is_null()) {
                let n_prompt = u32_at(usage, &["prompt_tokens"]);
                let n_cached = u32_at(usage, &["prompt_tokens_details", "cached_tokens"]);
                chunk.figures.n_cached = n_cached;
                chunk.figures.n_evaluated =
                    n_prompt.map(|n_prompt| n_prompt - n_cached.unwrap_or(0).min(n_prompt));
                chunk.figures.n_generated = u32_at(usage, &["completion_tokens"]);
            }
            // llama-server's `/v1` answers carry its own timings too.
            chunk.figures.update(llama_timings(&value));
        }
        Api::Ollama => {
            let path: &[&str] = if chat {
                &["message", "content"]
            } else {
                &["response"]
            };
            chunk.text = str_at(&value, path).to_owned();
            chunk.done = value.get("done").and_then(Value::as_bool) == Some(true);
            chunk.limit = str_at(&value, &["done_reason"]) == "length";
            let nanos_to_ms = |key: &str| {
                value
                    .get(key)
                    .and_then(Value::as_f64)
                    .map(|nanos| nanos / 1e6)
            };
            chunk.figures = ServerFigures {
                n_evaluated: u32_at(&value, &["prompt_eval_count"]),
                n_cached: None,
                n_generated: u32_at(&value, &["eval_count"]),
                t_prefill_ms: nanos_to_ms("prompt_eval_duration"),
                t_decode_ms: nanos_to_ms("eval_duration"),
            };
        }
    }
    Ok(Some(chunk))
}

fn llama_timings(value: &Value) -> ServerFigures {
    let Some(timings) = value.get("timings") else {
        return ServerFigures::default();
    };
    ServerFigures {
        n_evaluated: u32_at(timings, &["prompt_n"]),
        n_cached: u32_at(timings, &["cache_n"]),
        n_generated: u32_at(timings, &["predicted_n"]),
        t_prefill_ms: timings.get("prompt_ms").and_then(Value::as_f64),
        t_decode_ms: timings.get("predicted_ms").and_then(Value::as_f64),
    }
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    path.iter()
        .try_fold(value, |value, key| value.get(*key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn u32_at(value: &Value, path: &[&str]) -> Option<u32> {
    path.iter()
        .try_fold(value, |value, key| value.get(*key))
        .and_then(Value::as_u64)
        .map(|number| u32::try_from(number).unwrap_or(u32::MAX))
}

/// The message of an error body the server sent: JSON (see [`error_message_of`]), else the text.
pub fn error_message(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => error_message_of(&value),
        Err(_) => text.chars().take(500).collect(),
    }
}

/// The message of an error value (`{"error": …}`, `{"message": …}`, `"…"`).
fn error_message_of(value: &Value) -> String {
    let error = value.get("error").unwrap_or(value);
    match error {
        Value::String(message) => message.clone(),
        Value::Object(object) => object
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_owned),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_the_api_the_url_and_the_model() {
        let spec = EndpointSpec::parse("llama-server+http://gpu-node:8080/").unwrap();
        assert_eq!(spec.api, Api::LlamaServer);
        assert_eq!(spec.base_url, "http://gpu-node:8080");
        assert_eq!(spec.model, None);
        let spec = EndpointSpec::parse("openai+https://vllm.lan/v1#Qwen/Qwen2.5-Coder-7B").unwrap();
        assert_eq!(spec.api, Api::OpenAi);
        assert_eq!(spec.base_url, "https://vllm.lan/v1");
        assert_eq!(spec.model.as_deref(), Some("Qwen/Qwen2.5-Coder-7B"));
        assert_eq!(
            spec.to_string(),
            "openai+https://vllm.lan/v1#Qwen/Qwen2.5-Coder-7B"
        );
        let spec =
            EndpointSpec::parse("ollama+http://localhost:11434#qwen2.5-coder:1.5b-base").unwrap();
        assert_eq!(spec.model.as_deref(), Some("qwen2.5-coder:1.5b-base"));
        assert!(is_endpoint(" ollama+http://x#m"));
        assert!(is_endpoint("http://x:8080"));
        assert!(!is_endpoint("ollama:qwen2.5-coder"));
        assert!(!is_endpoint("hf:Qwen/x/y.gguf"));
    }

    #[test]
    fn malformed_specs_say_what_to_write() {
        let error = |spec: &str| EndpointSpec::parse(spec).unwrap_err();
        assert!(error("http://gpu-node:8080").contains("which API"));
        assert!(error("openai+https://vllm.lan/v1").contains("name the model"));
        assert!(error("ollama+localhost:11434#m").contains("http://"));
        assert!(error("llama-server+http://user:secret@host").contains("credentials"));
        assert!(error("llama-server+http:///x").contains("no host"));
    }

    fn call(prompt: &str) -> CompletionCall<'_> {
        CompletionCall {
            prompt,
            max_tokens: 16,
            stop: vec!["\n".to_owned()],
            sampling: SamplingConfig::default(),
            id_slot: Some(2),
            t_max_predict_ms: Some(500),
            n_ctx: 4096,
        }
    }

    #[test]
    fn completion_bodies_follow_each_api() {
        let (path, body) = completion_request(Api::LlamaServer, None, &call("<|fim_prefix|>a"));
        assert_eq!(path, "/completion");
        assert_eq!(body["prompt"], "<|fim_prefix|>a");
        assert_eq!(body["id_slot"], 2);
        assert_eq!(body["cache_prompt"], true);
        assert_eq!(body["n_predict"], 16);
        assert_eq!(body["t_max_predict_ms"], 500);
        assert_eq!(body["stream"], true);
        let (path, body) = completion_request(Api::OpenAi, Some("m"), &call("p"));
        assert_eq!(path, "/completions");
        assert_eq!(body["model"], "m");
        assert_eq!(body["max_tokens"], 16);
        assert_eq!(body["stop"], json!(["\n"]));
        assert!(body.get("id_slot").is_none());
        let (path, body) = completion_request(Api::Ollama, Some("m"), &call("p"));
        assert_eq!(path, "/api/generate");
        assert_eq!(body["raw"], true);
        assert_eq!(body["options"]["num_predict"], 16);
    }

    #[test]
    fn streamed_lines_give_text_end_and_figures() {
        let line = r#"data: {"content":"ab","stop":false,"timings":{"cache_n":40,"prompt_n":2,"prompt_ms":3.5,"predicted_n":1,"predicted_ms":7.0}}"#;
        let chunk = parse_line(Api::LlamaServer, false, line).unwrap().unwrap();
        assert_eq!(chunk.text, "ab");
        assert!(!chunk.done);
        assert_eq!(chunk.figures.n_cached, Some(40));
        assert_eq!(chunk.figures.n_evaluated, Some(2));
        assert_eq!(chunk.figures.t_decode_ms, Some(7.0));
        assert_eq!(parse_line(Api::LlamaServer, false, "").unwrap(), None);
        assert_eq!(
            parse_line(Api::OpenAi, false, ": keep-alive").unwrap(),
            None
        );
        let line = r#"data: {"choices":[{"text":"x","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8}}}"#;
        let chunk = parse_line(Api::OpenAi, false, line).unwrap().unwrap();
        assert_eq!(
            (chunk.text.as_str(), chunk.finished, chunk.limit),
            ("x", true, true)
        );
        assert_eq!(chunk.figures.n_evaluated, Some(2));
        assert_eq!(chunk.figures.n_generated, Some(3));
        assert!(
            parse_line(Api::OpenAi, false, "data: [DONE]")
                .unwrap()
                .unwrap()
                .done
        );
        let line = r#"data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_line(Api::OpenAi, true, line).unwrap().unwrap().text,
            "hi"
        );
        let line = r#"{"response":"","done":true,"prompt_eval_count":12,"eval_count":4,"eval_duration":2000000}"#;
        let chunk = parse_line(Api::Ollama, false, line).unwrap().unwrap();
        assert!(chunk.done);
        assert_eq!(chunk.figures.n_evaluated, Some(12));
        assert_eq!(chunk.figures.t_decode_ms, Some(2.0));
        let line = r#"{"message":{"role":"assistant","content":"ok"},"done":false}"#;
        assert_eq!(
            parse_line(Api::Ollama, true, line).unwrap().unwrap().text,
            "ok"
        );
    }

    #[test]
    fn streamed_errors_carry_the_servers_message() {
        let line =
            r#"data: {"error":{"code":500,"message":"the slot is busy","type":"server_error"}}"#;
        assert_eq!(
            parse_line(Api::LlamaServer, false, line).unwrap_err(),
            "the slot is busy"
        );
        assert_eq!(
            parse_line(Api::Ollama, false, r#"{"error":"model 'x' not found"}"#).unwrap_err(),
            "model 'x' not found"
        );
        assert!(parse_line(Api::Ollama, false, "<html>")
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn prompts_render_as_the_in_process_engine_lays_them_out() {
        let prompt = crate::engine::FimPrompt {
            repo_name: Some("ws".into()),
            extra: vec![crate::engine::ContextChunk {
                path: "a.rs".into(),
                label: "definition".into(),
                text: "fn a()".into(),
            }],
            path: "m.rs".into(),
            prefix: "fn main() {\n".into(),
            suffix: "\n}\n".into(),
            line_head: "    let".into(),
        };
        assert_eq!(
            prompt.render_text(&fim_family("qwen").unwrap().texts()),
            "<|repo_name|>ws\n<|file_sep|>a.rs\nfn a()\n<|file_sep|>m.rs\n<|fim_prefix|>fn main() {\n<|fim_suffix|>\n}\n<|fim_middle|>    let"
        );
        assert_eq!(
            prompt.render_text(&fim_family("codellama").unwrap().texts()),
            "<PRE>fn main() {\n<SUF>\n}\n<MID>    let"
        );
        assert_eq!(
            prompt.render_text(&FimTokenTexts::default()),
            "fn main() {\n    let"
        );
    }

    #[test]
    fn model_names_suggest_their_family() {
        assert_eq!(
            fim_family_of_name("qwen2.5-coder:1.5b").unwrap().family,
            "qwen"
        );
        assert_eq!(
            fim_family_of_name("bigcode/starcoder2-3b").unwrap().family,
            "starcoder"
        );
        assert_eq!(fim_family_of_name("llama3"), None);
    }
}
