//! End to end with the real Qwen2.5-Coder-0.5B Instruct (greedy decoding): what a user sees from
//! each feature is checked for substance, not only shape. The model is small, so the questions
//! are ones it answers reliably: a completion the code dictates, a chat answer that names what
//! the code computes, a documentation edit that still parses.

use serde_json::{json, Value};

use crate::support::{real_model, TestServer};

const URI: &str = "file:///w/fib.py";
const TEXT: &str =
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return \n\n\nprint(fibonacci(10))\n";

fn ready_server() -> TestServer {
    let mut server = TestServer::builder()
        .initialization_options(json!({
            "model": {"path": real_model(), "n_ctx": 4096, "n_slots": 1, "chat_n_ctx": 2048},
            "completion": {"max_tokens": 24, "time_budget_ms": 600000},
            "chat": {"max_tokens": 96, "max_edit_tokens": 160, "resolve_timeout_ms": 0},
        }))
        .capabilities(
            json!({"textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit"]}}},
                   "experimental": {"wellspring": {"chatProgress": true, "instructPrompt": true}}}),
        )
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    server.open(URI, "python", TEXT);
    server
}

/// Applies LSP text edits (UTF-16 positions; the texts here are ASCII) to `text`.
fn apply(text: &str, edits: &[Value]) -> String {
    let offset = |position: &Value| {
        let line = position["line"].as_u64().unwrap() as usize;
        let character = position["character"].as_u64().unwrap() as usize;
        text.split_inclusive('\n')
            .take(line)
            .map(str::len)
            .sum::<usize>()
            + character
    };
    let mut edits: Vec<&Value> = edits.iter().collect();
    edits.sort_by_key(|edit| std::cmp::Reverse(offset(&edit["range"]["start"])));
    let mut out = text.to_owned();
    for edit in edits {
        let start = offset(&edit["range"]["start"]);
        let end = offset(&edit["range"]["end"]);
        out.replace_range(start..end, edit["newText"].as_str().unwrap());
    }
    out
}

#[test]
fn the_real_model_completes_chats_and_edits_sensibly() {
    let mut server = ready_server();

    // Inline completion where the code leaves one sensible answer.
    let result = server
        .request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": URI}, "position": {"line": 3, "character": 11},
                   "context": {"triggerKind": 1}}),
        )
        .unwrap();
    let suggestion = result["items"][0]["insertText"]
        .as_str()
        .unwrap_or_default();
    let compact: String = suggestion.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        compact.starts_with("fibonacci(n-1)+fibonacci(n-2)"),
        "{result}\n{}",
        server.log()
    );

    // Chat about the function: the answer streams and says what the code computes.
    let function =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 4, "character": 0}});
    let question =
        "Which well-known number sequence does this function compute? Answer in one sentence.";
    let id = server.send_chat("real-1", URI, function, question);
    let answer = server.response(json!(id)).unwrap();
    let text = answer["text"].as_str().unwrap();
    assert!(text.to_lowercase().contains("fibonacci"), "{answer}");
    let streamed: String = server
        .chat_stream("real-1")
        .iter()
        .map(|progress| progress["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);

    // Add documentation: the edit applies, keeps the code and adds a docstring.
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 3, "character": 11}});
    let actions = server.code_actions(URI, &range);
    let document = actions
        .iter()
        .find(|action| action["title"] == "Wellspring: Add documentation")
        .unwrap_or_else(|| panic!("no documentation action in {actions:?}"))
        .clone();
    let resolved = server.request("codeAction/resolve", document).unwrap();
    let edits = resolved["edit"]["changes"][URI]
        .as_array()
        .unwrap_or_else(|| {
            panic!("no edit for {URI} in {resolved}\n{}", server.log());
        });
    let edited = apply(TEXT, edits);
    assert!(
        edited.contains("\"\"\"") || edited.contains('#'),
        "{edited}"
    );
    assert!(edited.contains("def fibonacci(n):"), "{edited}");
    assert!(edited.contains("print(fibonacci(10))"), "{edited}");
}
