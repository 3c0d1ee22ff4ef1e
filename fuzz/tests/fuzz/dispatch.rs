//! JSON-RPC dispatch over stdio: bursts of requests and notifications with random params, for
//! every method the server advertises and some it does not, sent to the real binary.
//!
//! After each burst every request must have been answered, none with an internal error (a handler
//! that panicked), nothing may have panicked anywhere in the process, and the server must still
//! answer with an untouched document intact. Params are mostly well-shaped with random leaves
//! (positions past the end, unknown URIs, versions from the edges of `i32`), sometimes damaged
//! (a field dropped or replaced by any JSON), sometimes any JSON at all.
//!
//! Each batch starts a fresh server, so a failure replays from its seed and batch. The engine is
//! either off (`model.path` empty) or failed to load (a model file that does not exist), which
//! keeps a burst to milliseconds and reaches the code before the engine is needed; one target runs
//! a few bursts on the tiny random-weight model, which is cheap enough to do the same with
//! inference.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};
use wellspring::lsp::ext;
use wellspring_fuzz::gen::{self, Bytes};
use wellspring_fuzz::{fuzz, Limits};

use crate::support::{tiny_model, TestServer};

/// A document no random message may change: checked after every burst.
const KEEP_URI: &str = "file:///w/keep.rs";
const KEEP_TEXT: &str = "fn keep() -> u32 {\r\n    42 // λ 😀\n}\n";

/// Documents the bursts open, change and close.
const SCRATCH: &[(&str, &str, &str)] = &[
    (
        "file:///w/scratch.rs",
        "rust",
        "fn main() {\n    let x = 1;\n}\n",
    ),
    (
        "file:///w/scratch.py",
        "python",
        "def f(a):\r\n    return a  # é\r\n",
    ),
];

/// What `initialize` may advertise. A capability outside this list is a method no target fuzzes:
/// add it to the generators below, then here.
const FUZZED_CAPABILITIES: &[&str] = &[
    "positionEncoding",
    "textDocumentSync",
    "inlineCompletionProvider",
    "completionProvider",
    "codeActionProvider",
    "executeCommandProvider",
];

/// Commands the generators send: the advertised ones, the client-side one and an unknown one.
const COMMANDS: &[&str] = &[
    ext::COMMAND_CHAT,
    ext::COMMAND_EXPLAIN,
    ext::COMMAND_INSTRUCT,
    ext::COMMAND_APPLY_ACTION,
    ext::COMMAND_DOWNLOAD_MODEL,
    ext::COMMAND_INSTRUCT_PROMPT,
    "wellspring.unheardOf",
];

/// How the engine is set up for a target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Engine {
    /// `model.path` is empty: completions are off.
    Off,
    /// `model.path` names a file that does not exist: the engine failed to load.
    Failed,
    /// The tiny random-weight model: requests run inference.
    Tiny,
}

#[derive(Debug, Clone)]
enum Outgoing {
    Request(&'static str, Value),
    Notification(&'static str, Value),
    /// Cancels the request of this burst with this index (modulo their number).
    Cancel(usize),
    /// A frame with any body; never one with an id, which could answer for a real request.
    Raw(Bytes),
}

#[derive(Debug, Clone)]
struct Burst {
    messages: Vec<Outgoing>,
    /// Shut the server down politely after the burst (and start a new one for the next).
    shut_down: bool,
}

fn uri(for_mutation: bool) -> BoxedStrategy<String> {
    let scratch = prop::sample::select(SCRATCH.iter().map(|(uri, _, _)| *uri).collect::<Vec<_>>());
    let any_uri = prop::sample::select(gen::URIS);
    if for_mutation {
        prop_oneof![3 => scratch, 1 => any_uri]
            .prop_map(str::to_owned)
            .boxed()
    } else {
        prop_oneof![3 => Just(KEEP_URI), 3 => scratch, 1 => any_uri]
            .prop_map(str::to_owned)
            .boxed()
    }
}

/// A line: one the documents here have (they have three or four) most of the time.
fn line() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => (0..4_u32).prop_map(Value::from),
        1 => gen::position_component(),
    ]
    .boxed()
}

fn position() -> BoxedStrategy<Value> {
    (line(), gen::position_component())
        .prop_map(|(line, character)| json!({"line": line, "character": character}))
        .boxed()
}

/// A range, its ends in order most of the time (a reversed range is refused at once, and the
/// code behind that check deserves the cases).
fn range() -> BoxedStrategy<Value> {
    (position(), position(), prop::bool::weighted(0.8))
        .prop_map(|(start, end, ordered)| {
            let key =
                |position: &Value| (position["line"].as_u64(), position["character"].as_u64());
            if ordered && key(&end) < key(&start) {
                json!({"start": end, "end": start})
            } else {
                json!({"start": start, "end": end})
            }
        })
        .boxed()
}

fn version() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (0..12_i32).prop_map(Value::from),
        1 => gen::edge_integer().prop_map(Value::from),
    ]
    .boxed()
}

fn diagnostic() -> BoxedStrategy<Value> {
    (range(), gen::text(4), 1..5_i32)
        .prop_map(|(range, message, severity)| {
            json!({"range": range, "message": message, "severity": severity})
        })
        .boxed()
}

fn text_document() -> BoxedStrategy<Value> {
    uri(false).prop_map(|uri| json!({"uri": uri})).boxed()
}

fn code_action_data() -> BoxedStrategy<Value> {
    let action = prop::sample::select(vec![
        "fix", "document", "tests", "simplify", "explain", "instruct", "?",
    ]);
    let byte_range = prop::option::of((gen::edge_integer(), gen::edge_integer()));
    let job = prop::option::of("[a-z0-9-]{0,6}");
    (
        action,
        uri(false),
        range(),
        version(),
        vec(gen::text(3), 0..2),
        byte_range,
        job,
    )
        .prop_map(
            |(action, uri, range, version, diagnostics, byte_range, job)| {
                let mut data = json!({
                    "action": action,
                    "uri": uri,
                    "range": range,
                    "version": version,
                    "diagnostics": diagnostics,
                });
                if let Some((start, end)) = byte_range {
                    data["byteRange"] = json!([start, end]);
                }
                if let Some(job) = job {
                    data["job"] = json!(job);
                }
                data
            },
        )
        .boxed()
}

fn chat_arguments() -> BoxedStrategy<Value> {
    let role = prop::sample::select(vec!["user", "assistant", "system", "x"]);
    let history = vec((role, gen::text(4)), 0..3);
    (
        "[a-z0-9]{0,6}",
        text_document(),
        range(),
        gen::text(6),
        history,
    )
        .prop_map(|(chat_id, text_document, range, question, history)| {
            let history: Vec<Value> = history
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect();
            json!([{
                "chatId": chat_id,
                "textDocument": text_document,
                "range": range,
                "question": question,
                "history": history,
            }])
        })
        .boxed()
}

fn command_arguments(command: &'static str) -> BoxedStrategy<Value> {
    match command {
        ext::COMMAND_CHAT => chat_arguments(),
        ext::COMMAND_INSTRUCT => (text_document(), range(), gen::text(6))
            .prop_map(|(text_document, range, instruction)| {
                json!([{"textDocument": text_document, "range": range, "instruction": instruction}])
            })
            .boxed(),
        ext::COMMAND_APPLY_ACTION => code_action_data().prop_map(|data| json!([data])).boxed(),
        _ => (text_document(), range())
            .prop_map(|(text_document, range)| {
                json!([{"textDocument": text_document, "range": range}])
            })
            .boxed(),
    }
}

fn execute_command() -> BoxedStrategy<Value> {
    prop::sample::select(COMMANDS)
        .prop_flat_map(|command| {
            let token = prop::option::of("[a-z0-9]{1,4}");
            (Just(command), command_arguments(command), token)
        })
        .prop_map(|(command, arguments, token)| {
            let mut params = json!({"command": command, "arguments": arguments});
            if let Some(token) = token {
                params["workDoneToken"] = json!(token);
            }
            params
        })
        .boxed()
}

fn position_params() -> BoxedStrategy<Value> {
    (text_document(), position())
        .prop_map(|(text_document, position)| {
            json!({"textDocument": text_document, "position": position})
        })
        .boxed()
}

fn completion() -> BoxedStrategy<Value> {
    let trigger_character = prop::sample::select(vec![".", "(", "x"]);
    (position_params(), 1..4_i32, trigger_character)
        .prop_map(|(mut params, trigger_kind, character)| {
            params["context"] = json!({"triggerKind": trigger_kind, "triggerCharacter": character});
            params
        })
        .boxed()
}

fn inline_completion() -> BoxedStrategy<Value> {
    let selected = prop::option::of((range(), gen::text(3)));
    (position_params(), 0..3_i32, selected)
        .prop_map(|(mut params, trigger_kind, selected)| {
            params["context"] = json!({"triggerKind": trigger_kind});
            if let Some((range, text)) = selected {
                params["context"]["selectedCompletionInfo"] = json!({"range": range, "text": text});
            }
            params
        })
        .boxed()
}

fn code_action() -> BoxedStrategy<Value> {
    let kind = prop::sample::select(vec![
        "quickfix",
        "refactor",
        "refactor.rewrite",
        "source",
        "",
    ]);
    let only = prop::option::of(vec(kind, 0..3));
    (text_document(), range(), vec(diagnostic(), 0..3), only)
        .prop_map(|(text_document, range, diagnostics, only)| {
            let mut context = json!({"diagnostics": diagnostics});
            if let Some(only) = only {
                context["only"] = json!(only);
            }
            json!({"textDocument": text_document, "range": range, "context": context})
        })
        .boxed()
}

fn code_action_resolve() -> BoxedStrategy<Value> {
    let data = prop::option::of(code_action_data());
    let diagnostics = prop::option::of(vec(diagnostic(), 0..2));
    (gen::text(2), data, diagnostics)
        .prop_map(|(title, data, diagnostics)| {
            let mut action = json!({"title": title, "kind": "quickfix"});
            if let Some(data) = data {
                action["data"] = data;
            }
            if let Some(diagnostics) = diagnostics {
                action["diagnostics"] = json!(diagnostics);
            }
            action
        })
        .boxed()
}

fn did_open() -> BoxedStrategy<Value> {
    let language_id = prop::sample::select(vec!["rust", "python", "c", "lua", "plaintext", ""]);
    (uri(true), language_id, version(), gen::text(16))
        .prop_map(|(uri, language_id, version, text)| {
            json!({"textDocument": {
                "uri": uri, "languageId": language_id, "version": version, "text": text,
            }})
        })
        .boxed()
}

fn content_change() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (range(), gen::text(5))
            .prop_map(|(range, text)| json!({"range": range, "text": text})),
        1 => gen::text(10).prop_map(|text| json!({"text": text})),
    ]
    .boxed()
}

fn did_change() -> BoxedStrategy<Value> {
    (uri(true), version(), vec(content_change(), 0..4))
        .prop_map(|(uri, version, changes)| {
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": changes})
        })
        .boxed()
}

fn did_save_or_close() -> BoxedStrategy<Value> {
    (uri(true), prop::option::of(gen::text(4)))
        .prop_map(|(uri, text)| {
            let mut params = json!({"textDocument": {"uri": uri}});
            if let Some(text) = text {
                params["text"] = json!(text);
            }
            params
        })
        .boxed()
}

/// Settings that never name a model or a log file (those would load a model or write files), with
/// values that cannot make a request wait for long.
fn settings() -> BoxedStrategy<Value> {
    let completion = (any::<bool>(), 0..80_u32, 0..3_u64, vec(gen::text(2), 0..2)).prop_map(
        |(enabled, max_tokens, debounce_ms, stop)| {
            json!({
                "enabled": enabled,
                "max_tokens": max_tokens,
                "debounce_ms": debounce_ms,
                "stop": stop,
            })
        },
    );
    let chat = (0..80_u32, 0..400_u64).prop_map(|(max_tokens, resolve_timeout_ms)| {
        json!({
            "max_tokens": max_tokens,
            "max_edit_tokens": max_tokens,
            "resolve_timeout_ms": resolve_timeout_ms,
        })
    });
    (completion, chat, 0..4096_u32, any::<bool>())
        .prop_map(|(completion, chat, budget_tokens, wrapped)| {
            let settings = json!({
                "completion": completion,
                "context": {"budget_tokens": budget_tokens, "index_workspace": false},
                "chat": chat,
            });
            if wrapped {
                json!({"wellspring": settings, "other": {"x": 1}})
            } else {
                settings
            }
        })
        .boxed()
}

/// Well-shaped params for a method.
fn shaped_params(method: &'static str) -> BoxedStrategy<Value> {
    match method {
        "textDocument/completion" => completion(),
        ext::INLINE_COMPLETION => inline_completion(),
        "textDocument/codeAction" => code_action(),
        "codeAction/resolve" => code_action_resolve(),
        "workspace/executeCommand" => execute_command(),
        ext::DOCUMENT_STATE => uri(false).prop_map(|uri| json!({"uri": uri})).boxed(),
        ext::SERVER_INFO | ext::STATS => {
            prop::sample::select(vec![json!(null), json!({}), json!([])]).boxed()
        }
        "initialize" => {
            Just(json!({"processId": null, "rootUri": null, "capabilities": {}})).boxed()
        }
        "textDocument/didOpen" => did_open(),
        "textDocument/didChange" => did_change(),
        "textDocument/didSave" | "textDocument/didClose" => did_save_or_close(),
        "workspace/didChangeConfiguration" => settings()
            .prop_map(|settings| json!({"settings": settings}))
            .boxed(),
        "$/setTrace" => prop::sample::select(vec!["off", "messages", "verbose", "loud"])
            .prop_map(|value| json!({"value": value}))
            .boxed(),
        _ => gen::json_value(),
    }
}

/// Params for a method: well-shaped, damaged, or any JSON. Notifications that change state keep
/// their shape well enough never to name the kept document (damage only brings in other URIs).
fn params(method: &'static str, engine: Engine) -> BoxedStrategy<Value> {
    let shaped = shaped_params(method);
    if method == "workspace/didChangeConfiguration" && engine == Engine::Tiny {
        // With a real engine, damaged settings could ask for hours of generation.
        return shaped;
    }
    prop_oneof![
        6 => shaped.clone(),
        3 => (shaped, gen::damage()).prop_map(|(mut params, damage)| {
            gen::apply_damage(&mut params, &damage);
            params
        }),
        1 => gen::json_value(),
    ]
    .boxed()
}

const REQUESTS: &[&str] = &[
    "textDocument/completion",
    ext::INLINE_COMPLETION,
    "textDocument/codeAction",
    "codeAction/resolve",
    "workspace/executeCommand",
    ext::DOCUMENT_STATE,
    ext::SERVER_INFO,
    ext::STATS,
    "initialize",
    // Not advertised: these must get "method not found".
    "textDocument/hover",
    "wellspring/unheardOf",
    "",
];

const NOTIFICATIONS: &[&str] = &[
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didSave",
    "textDocument/didClose",
    "workspace/didChangeConfiguration",
    "initialized",
    "$/setTrace",
    "$/unheardOf",
];

fn outgoing(engine: Engine) -> BoxedStrategy<Outgoing> {
    let request = prop::sample::select(REQUESTS).prop_flat_map(move |method| {
        params(method, engine).prop_map(move |params| Outgoing::Request(method, params))
    });
    let notification = prop::sample::select(NOTIFICATIONS).prop_flat_map(move |method| {
        params(method, engine).prop_map(move |params| Outgoing::Notification(method, params))
    });
    let raw = prop_oneof![
        gen::json_value().prop_map(|mut value| {
            if let Some(object) = value.as_object_mut() {
                object.remove("id");
            }
            value.to_string().into_bytes()
        }),
        vec(any::<u8>(), 0..16),
    ]
    .prop_map(|body| Outgoing::Raw(Bytes(body)));
    prop_oneof![
        6 => request,
        4 => notification,
        1 => any::<usize>().prop_map(Outgoing::Cancel),
        1 => raw,
    ]
    .boxed()
}

fn burst(engine: Engine) -> BoxedStrategy<Burst> {
    (vec(outgoing(engine), 1..10), prop::bool::weighted(0.03))
        .prop_map(|(messages, shut_down)| Burst {
            messages,
            shut_down,
        })
        .boxed()
}

fn initialization_options(engine: Engine) -> Value {
    let path = match engine {
        Engine::Off => String::new(),
        Engine::Failed => "/nonexistent/wellspring-fuzz/model.gguf".to_owned(),
        Engine::Tiny => tiny_model().display().to_string(),
    };
    // Small contexts keep the tiny model's prompts and answers short.
    json!({"model": {"path": path, "n_ctx": 1024, "chat_n_ctx": 1024, "n_slots": 2},
           "completion": {"max_tokens": 16, "time_budget_ms": 1000},
           "context": {"index_workspace": false},
           "chat": {"max_tokens": 24, "max_edit_tokens": 24, "resolve_timeout_ms": 200}})
}

/// Client capabilities that switch on every optional path: resolved code actions, document
/// changes, progress, shown documents, streamed chat and instruction prompts.
fn capabilities() -> Value {
    json!({
        "textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit"]}}},
        "workspace": {"workspaceEdit": {"documentChanges": true}},
        "window": {"workDoneProgress": true, "showDocument": {"support": true}},
        "experimental": {"wellspring": {"chatProgress": true, "instructPrompt": true}},
    })
}

/// How each method's requests were answered, so a run shows how many random params got past
/// deserialisation into the handlers.
#[derive(Default, Clone)]
struct Outcomes(Rc<RefCell<BTreeMap<&'static str, BTreeMap<String, u64>>>>);

impl Outcomes {
    fn record(&self, method: &'static str, response: &Result<Value, Value>) {
        let outcome = match response {
            Ok(Value::Null) => "null".to_owned(),
            Ok(_) => "result".to_owned(),
            Err(error) => format!("error {}", error["code"]),
        };
        *self
            .0
            .borrow_mut()
            .entry(method)
            .or_default()
            .entry(outcome)
            .or_default() += 1;
    }

    fn print(&self, target: &str) {
        for (method, outcomes) in self.0.borrow().iter() {
            let outcomes: Vec<String> = outcomes
                .iter()
                .map(|(outcome, count)| format!("{count} {outcome}"))
                .collect();
            println!("{target}: {method:?}: {}", outcomes.join(", "));
        }
    }
}

/// One server under fuzzing, and how much of its log and stderr has been read.
struct Session {
    server: TestServer,
    log_len: usize,
    stderr_len: usize,
    outcomes: Outcomes,
}

impl Session {
    fn start(engine: Engine, rich_client: bool, outcomes: Outcomes) -> Session {
        let mut builder = TestServer::builder()
            .env("WELLSPRING_LOG", "info")
            .initialization_options(initialization_options(engine));
        if rich_client {
            builder = builder.capabilities(capabilities());
        }
        let mut server = builder.start();
        let advertised = server.initialize_result["capabilities"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for capability in advertised.keys() {
            assert!(
                FUZZED_CAPABILITIES.contains(&capability.as_str()),
                "the server advertises {capability}, which no fuzz target covers yet"
            );
        }
        let commands =
            &server.initialize_result["capabilities"]["executeCommandProvider"]["commands"];
        for command in commands.as_array().into_iter().flatten() {
            assert!(
                COMMANDS.contains(&command.as_str().unwrap_or_default()),
                "the server advertises command {command}, which no fuzz target covers yet"
            );
        }
        // Bursts start once the engine has settled, so they meet the state the target is about.
        let settled = match engine {
            Engine::Off => "disabled",
            Engine::Failed => "error",
            Engine::Tiny => "ready",
        };
        server.notification("wellspring/status", |params| params["state"] == settled);
        server.open(KEEP_URI, "rust", KEEP_TEXT);
        for (uri, language_id, text) in SCRATCH {
            server.open(uri, language_id, text);
        }
        Session {
            server,
            log_len: 0,
            stderr_len: 0,
            outcomes,
        }
    }

    /// Sends a burst and checks the server came through it.
    fn run(&mut self, burst: &Burst) -> Result<(), TestCaseError> {
        let server = &mut self.server;
        let mut requests = Vec::new();
        for message in &burst.messages {
            match message {
                Outgoing::Request(method, params) => {
                    requests.push((server.send_request(method, params.clone()), *method));
                }
                Outgoing::Notification(method, params) => server.notify(method, params.clone()),
                Outgoing::Cancel(pick) => {
                    if !requests.is_empty() {
                        let (id, _) = requests[pick % requests.len()];
                        server.notify("$/cancelRequest", json!({"id": id}));
                    }
                }
                Outgoing::Raw(Bytes(body)) => {
                    let mut framed = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
                    framed.extend(body);
                    server.send_raw(&framed);
                }
            }
        }
        for (id, method) in requests {
            let response = server.response(json!(id));
            self.outcomes.record(method, &response);
            if let Err(error) = response {
                prop_assert!(
                    error["code"] != json!(-32603),
                    "{method} failed with an internal error: {error}"
                );
            }
        }
        let state = server.document_state(KEEP_URI);
        prop_assert!(state.is_ok(), "the kept document is gone: {:?}", state);
        let state = state.expect("checked above");
        prop_assert_eq!(&state["text"], &json!(KEEP_TEXT));
        prop_assert_eq!(&state["version"], &json!(1));
        let info = server.request(ext::SERVER_INFO, Value::Null);
        prop_assert!(info.is_ok(), "serverInfo failed: {:?}", info);
        let log = server.log();
        let new_log = log.get(self.log_len..).unwrap_or_default();
        prop_assert!(
            !new_log.contains("panicked"),
            "a handler panicked:\n{}",
            new_log
        );
        self.log_len = log.len();
        let stderr = server.stderr();
        let new_stderr = stderr.get(self.stderr_len..).unwrap_or_default();
        prop_assert!(
            !new_stderr.contains("panicked"),
            "the server panicked:\n{}",
            new_stderr
        );
        self.stderr_len = stderr.len();
        server.notifications.clear();
        server.server_requests.clear();
        Ok(())
    }
}

fn fuzz_dispatch(target: &str, engine: Engine, rich_client: bool, limits: Limits) {
    let outcomes = Outcomes::default();
    fuzz(target, limits, burst(engine), |_| {
        let outcomes = outcomes.clone();
        let session: RefCell<Option<Session>> = RefCell::new(None);
        move |burst: Burst| {
            let mut slot = session.borrow_mut();
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                let current = slot
                    .get_or_insert_with(|| Session::start(engine, rich_client, outcomes.clone()));
                current.run(&burst)?;
                if burst.shut_down {
                    let session = slot.take().expect("started above");
                    let status = session.server.shutdown();
                    prop_assert!(status.success(), "the server exited with {}", status);
                }
                Ok(())
            }));
            // After a failure the server's state is suspect: the next case starts a new one.
            if !matches!(outcome, Ok(Ok(()))) {
                *slot = None;
            }
            match outcome {
                Ok(result) => result,
                Err(panic) => panic::resume_unwind(panic),
            }
        }
    });
    outcomes.print(target);
}

#[test]
fn random_params_without_an_engine() {
    fuzz_dispatch("dispatch_engine_off", Engine::Off, false, Limits::SERVER);
}

#[test]
fn random_params_with_a_failed_engine_and_a_rich_client() {
    fuzz_dispatch(
        "dispatch_engine_failed",
        Engine::Failed,
        true,
        Limits::SERVER,
    );
}

#[test]
fn random_params_on_the_tiny_model() {
    let limits = Limits {
        batch_cases: 4,
        default_max_cases: 8,
        ..Limits::SERVER
    };
    fuzz_dispatch("dispatch_tiny_model", Engine::Tiny, true, limits);
}
