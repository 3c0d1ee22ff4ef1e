//! Generic LSP clients, end to end with the real engine on the tiny model: a client that behaves
//! like Helix (no inline completion, no `wellspring/…` notifications, one-character selections,
//! no `documentChanges`) and one that behaves like VS Code (versioned edits), and above all the
//! rule that an edit never lands on text it was not computed for.
//!
//! The tiny model writes noise, so edits are checked by their ranges and versions, never their
//! words. To change the document while the model works, without racing it, a test first holds
//! the engine with a long chat (the engine answers one chat or action at a time), queues the
//! edit, changes the document, and then cancels the chat.

use serde_json::{json, Value};

use crate::support::{tiny_model, TestServer};

/// A plain-text file, so that the tiny model's noise is an edit the server accepts.
const URI: &str = "file:///w/stats.txt";
const TEXT: &str = concat!(
    "values = load()\n",
    "total = 0\n",
    "count = 0\n",
    "\n",
    "def variance(values):\n",
    "    m = mean(values)\n",
    "    return sum((v - m) ** 2 for v in values) / len(values)\n",
    "\n",
    "print(variance(values))\n",
);

/// Lines 4 to 6 (`def variance` and its body), as in the report this test comes from.
fn variance_lines() -> Value {
    json!({"start": {"line": 4, "character": 0}, "end": {"line": 7, "character": 0}})
}

/// What Helix 25.07 announces, as far as Wellspring cares.
fn helix_capabilities() -> Value {
    json!({
        "general": {"positionEncodings": ["utf-8", "utf-32", "utf-16"]},
        "textDocument": {
            "completion": {"completionItem": {"snippetSupport": true}},
            "codeAction": {
                "codeActionLiteralSupport": {"codeActionKind": {"valueSet": [
                    "", "quickfix", "refactor", "refactor.extract", "refactor.inline",
                    "refactor.rewrite", "source", "source.organizeImports"]}},
                "resolveSupport": {"properties": ["edit", "command"]},
                "dataSupport": true
            }
        },
        "window": {"workDoneProgress": true, "showDocument": {"support": true}},
        "workspace": {"applyEdit": true, "workspaceEdit": {"documentChanges": false}}
    })
}

/// A client with versioned edits and the shims' experimental capabilities, like VS Code.
fn vscode_capabilities() -> Value {
    json!({
        "textDocument": {"codeAction": {"resolveSupport": {"properties": ["edit"]}}},
        "window": {"workDoneProgress": true},
        "workspace": {"applyEdit": true, "workspaceEdit": {"documentChanges": true}},
        "experimental": {"wellspring": {"chatProgress": true, "instructPrompt": true}}
    })
}

/// Tokens in a chat answer: enough for a chat that holds the engine to outlast a few round trips
/// with the client, so a test can queue and change things behind it before cancelling it.
const HOLDING_CHAT_TOKENS: u32 = 100_000;

fn ready(capabilities: Value, resolve_timeout_ms: u64) -> TestServer {
    ready_with(capabilities, resolve_timeout_ms, HOLDING_CHAT_TOKENS)
}

fn ready_with(capabilities: Value, resolve_timeout_ms: u64, chat_max_tokens: u32) -> TestServer {
    let options = json!({
        "model": {"path": tiny_model(), "n_ctx": 2048, "n_slots": 2, "chat_n_ctx": 8192},
        "completion": {"max_tokens": 8},
        "chat": {"max_tokens": chat_max_tokens, "max_edit_tokens": 24,
                 "resolve_timeout_ms": resolve_timeout_ms},
    });
    let mut server = TestServer::builder()
        .initialization_options(options)
        .capabilities(capabilities)
        .start();
    let status = server.notification("wellspring/status", |params| {
        params["state"] == "ready" || params["state"] == "error"
    });
    assert_eq!(status["state"], "ready", "{status}\n{}", server.log());
    server.open(URI, "plaintext", TEXT);
    server
}

/// Starts a chat that runs until cancelled and waits until the engine is writing it, so actions
/// asked for afterwards queue behind it. Returns the chat's request id.
fn hold_engine(server: &mut TestServer, streams_chat_progress: bool) -> i64 {
    let everything =
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 9, "character": 0}});
    let id = server.send_chat(
        "hold",
        URI,
        everything,
        "Tell me everything about this file.",
    );
    if streams_chat_progress {
        server.notification("wellspring/chatProgress", |params| {
            params["chatId"] == "hold" && params["delta"].as_str().is_some_and(|d| !d.is_empty())
        });
    } else {
        let token = server.progress_begins("Chat: Tell me everything");
        server.notification("$/progress", |params| {
            params["token"] == token && params["value"]["kind"] == "report"
        });
    }
    id
}

fn release_engine(server: &mut TestServer, hold: i64) {
    server.notify("$/cancelRequest", json!({"id": hold}));
    assert_eq!(server.response(json!(hold)).unwrap_err()["code"], -32800);
}

fn change(server: &mut TestServer, version: i32, range: Value, text: &str) {
    server.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": version},
               "contentChanges": [{"range": range, "text": text}]}),
    );
}

/// Two lines typed at the top of the file.
fn type_imports_above(server: &mut TestServer) {
    let top = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}});
    change(server, 2, top, "import math\nimport os\n");
}

/// A word changed inside the body of `variance` (line 5).
fn edit_inside_variance(server: &mut TestServer) {
    let word = json!({"start": {"line": 5, "character": 4}, "end": {"line": 5, "character": 5}});
    change(server, 2, word, "mu");
}

fn instruct(server: &mut TestServer) -> i64 {
    server.send_request(
        "workspace/executeCommand",
        json!({"command": "wellspring.instruct", "arguments": [{
            "textDocument": {"uri": URI}, "range": variance_lines(),
            "instruction": "rename the variable m to avg"}]}),
    )
}

/// The single text edit of an unversioned `WorkspaceEdit`.
fn unversioned_edit(edit: &Value) -> Value {
    assert!(edit["documentChanges"].is_null(), "{edit}");
    let edits = edit["changes"][URI].as_array().expect("edits for the file");
    assert_eq!(edits.len(), 1, "{edit}");
    edits[0].clone()
}

/// The single text edit of a versioned `WorkspaceEdit`, and the version it names.
fn versioned_edit(edit: &Value) -> (Value, i64) {
    assert!(edit["changes"].is_null(), "{edit}");
    let document_edit = &edit["documentChanges"][0];
    assert_eq!(document_edit["textDocument"]["uri"], URI, "{edit}");
    let edits = document_edit["edits"].as_array().expect("edits");
    assert_eq!(edits.len(), 1, "{edit}");
    let version = document_edit["textDocument"]["version"]
        .as_i64()
        .expect("a version");
    (edits[0].clone(), version)
}

fn shown_error(server: &mut TestServer, containing: &str) -> String {
    let message = server.notification("window/showMessage", |params| {
        params["type"] == 1
            && params["message"]
                .as_str()
                .is_some_and(|it| it.contains(containing))
    });
    message["message"].as_str().unwrap().to_owned()
}

fn text_now(server: &mut TestServer) -> String {
    server.document_state(URI).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_instruct_edit_moves_past_lines_typed_above_it_while_the_model_writes() {
    let mut server = ready(helix_capabilities(), 1500);
    let hold = hold_engine(&mut server, false);
    let id = instruct(&mut server);
    server.progress_begins("Wellspring: Edit with instruction");
    type_imports_above(&mut server);
    release_engine(&mut server, hold);
    let result = server.response(json!(id)).expect("the edit is applied");
    let apply = server.server_request("workspace/applyEdit");
    let edit = unversioned_edit(&apply["params"]["edit"]);
    assert_eq!(
        edit["range"],
        json!({"start": {"line": 6, "character": 0}, "end": {"line": 9, "character": 0}}),
        "the edit moved down by the two lines typed above it"
    );
    assert_eq!(result, apply["params"]["edit"]);
}

#[test]
fn an_instruct_edit_is_refused_when_its_lines_were_edited_meanwhile() {
    let mut server = ready(helix_capabilities(), 1500);
    let hold = hold_engine(&mut server, false);
    let id = instruct(&mut server);
    let token = server.progress_begins("Wellspring: Edit with instruction");
    edit_inside_variance(&mut server);
    release_engine(&mut server, hold);
    let error = server.response(json!(id)).unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("was edited meanwhile"),
        "{error}"
    );
    let shown = shown_error(&mut server, "was edited meanwhile");
    assert!(
        shown.starts_with("Wellspring: ") && !shown.contains("Wellspring: Wellspring"),
        "{shown}"
    );
    // The progress ended before the message came: clients that clear their status line when a
    // progress ends (Helix) would otherwise hide the message.
    assert!(
        server.has_notification("$/progress", |params| {
            params["token"] == token && params["value"]["kind"] == "end"
        }),
        "the progress had not ended when the message was shown"
    );
    assert!(
        !server
            .server_requests
            .iter()
            .any(|request| request["method"] == "workspace/applyEdit"),
        "no edit was sent"
    );
    assert_eq!(
        text_now(&mut server),
        TEXT.replacen("    m =", "    mu =", 1)
    );
}

/// The Simplify action on the `variance` lines, as listed at version 1.
fn simplify_action(server: &mut TestServer) -> Value {
    server.code_action(URI, &variance_lines(), "Wellspring: Simplify")
}

#[test]
fn a_resolved_edit_is_versioned_and_moved_past_lines_typed_while_the_model_writes() {
    let mut server = ready(vscode_capabilities(), 0);
    let simplify = simplify_action(&mut server);
    let hold = hold_engine(&mut server, true);
    let id = server.send_request("codeAction/resolve", simplify);
    server.progress_begins("Wellspring: Simplify");
    type_imports_above(&mut server);
    release_engine(&mut server, hold);
    let resolved = server.response(json!(id)).expect("resolved");
    let (edit, version) = versioned_edit(&resolved["edit"]);
    assert_eq!(version, 2, "the edit names the version it was moved onto");
    assert_eq!(
        edit["range"],
        json!({"start": {"line": 6, "character": 0}, "end": {"line": 9, "character": 0}})
    );
}

#[test]
fn an_action_offered_before_an_edit_resolves_on_the_text_as_it_is_now() {
    let mut server = ready(vscode_capabilities(), 0);
    let simplify = simplify_action(&mut server);
    type_imports_above(&mut server);
    let resolved = server
        .request("codeAction/resolve", simplify.clone())
        .expect("resolved");
    let (edit, version) = versioned_edit(&resolved["edit"]);
    assert_eq!(version, 2);
    assert_eq!(edit["range"]["start"]["line"], 6, "{edit}");

    // Once the selected lines themselves change, the offer is out of date.
    let word = json!({"start": {"line": 7, "character": 4}, "end": {"line": 7, "character": 5}});
    change(&mut server, 3, word, "mu");
    let error = server.request("codeAction/resolve", simplify).unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("ask for code actions again"),
        "{error}"
    );
    shown_error(&mut server, "ask for code actions again");
}

#[test]
fn apply_action_commands_refuse_an_edit_whose_lines_changed_meanwhile() {
    // Without resolve support, actions carry a wellspring.applyAction command.
    let mut capabilities = helix_capabilities();
    capabilities["textDocument"]["codeAction"]["resolveSupport"] = Value::Null;
    let mut server = ready(capabilities, 1500);
    let simplify = simplify_action(&mut server);
    assert!(simplify["data"].is_null(), "{simplify}");
    let command = simplify["command"].clone();
    assert_eq!(command["command"], "wellspring.applyAction", "{simplify}");
    let hold = hold_engine(&mut server, false);
    let id = server.send_request(
        "workspace/executeCommand",
        json!({"command": command["command"], "arguments": command["arguments"]}),
    );
    server.progress_begins("Wellspring: Simplify");
    edit_inside_variance(&mut server);
    release_engine(&mut server, hold);
    let error = server.response(json!(id)).unwrap_err();
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("edited meanwhile"));
    shown_error(&mut server, "edited meanwhile");
    assert!(!server
        .server_requests
        .iter()
        .any(|request| request["method"] == "workspace/applyEdit"));
}

#[test]
fn a_slow_resolve_answers_at_once_and_the_edit_applies_itself_when_done() {
    let mut server = ready(helix_capabilities(), 50);
    let simplify = simplify_action(&mut server);
    let hold = hold_engine(&mut server, false);
    // The engine is busy, so the model cannot be done within 50 ms: resolve hands over.
    let resolved = server
        .request("codeAction/resolve", simplify)
        .expect("resolved");
    assert!(resolved["edit"].is_null(), "{resolved}");
    let command = resolved["command"].clone();
    assert_eq!(command["command"], "wellspring.applyAction", "{resolved}");
    assert!(command["arguments"][0]["job"].is_string(), "{resolved}");
    // Helix 25.07 never runs that command; the edit applies itself all the same, moved past the
    // lines typed meanwhile.
    type_imports_above(&mut server);
    release_engine(&mut server, hold);
    let apply = server.server_request("workspace/applyEdit");
    let edit = unversioned_edit(&apply["params"]["edit"]);
    assert_eq!(edit["range"]["start"]["line"], 6, "{edit}");
    assert_eq!(edit["range"]["end"]["line"], 9, "{edit}");
    // A client that does run it gets `null` at once, and nothing is applied twice.
    let result = server
        .request(
            "workspace/executeCommand",
            json!({"command": command["command"], "arguments": command["arguments"]}),
        )
        .expect("the command answers");
    assert!(result.is_null(), "{result}");
    server.document_state(URI).unwrap();
    assert!(!server
        .server_requests
        .iter()
        .any(|request| request["method"] == "workspace/applyEdit"));
}

#[test]
fn a_null_answer_to_apply_edit_is_taken_as_applied() {
    let mut server = ready(helix_capabilities(), 1500);
    server.apply_edit_answer = Value::Null;
    let id = instruct(&mut server);
    let result = server
        .response(json!(id))
        .expect("no error for a null answer");
    assert!(result["changes"][URI].is_array(), "{result}");
}

#[test]
fn chat_without_the_custom_notification_streams_as_progress_and_opens_a_document() {
    let mut server = ready_with(helix_capabilities(), 1500, 24);
    // Loading the model was shown as progress too, since this client has no status bar for it.
    let load = server.progress_begins("Wellspring: loading the model");
    let load_reports = server.progress_reports_until_end(&load);
    assert!(load_reports
        .iter()
        .all(|report| report["message"].as_str().unwrap().ends_with('%')));
    let id = server.send_request(
        "workspace/executeCommand",
        json!({"command": "wellspring.explain", "arguments": [{
            "textDocument": {"uri": URI}, "range": variance_lines()}]}),
    );
    let token = server.progress_begins("Explain");
    let reports = server.progress_reports_until_end(&token);
    assert!(!reports.is_empty(), "the answer streams as reports");
    for report in &reports {
        let message = report["message"].as_str().unwrap();
        assert!(
            !message.contains('\n') && message.chars().count() <= 80,
            "{message:?}"
        );
    }
    let result = server.response(json!(id)).expect("answered");
    let answer = result["text"].as_str().unwrap();
    assert!(!answer.is_empty());
    let show = server.server_request("window/showDocument");
    let path = show["params"]["uri"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .expect("a file URI")
        .to_owned();
    let shown = std::fs::read_to_string(&path).expect("the answer file exists");
    assert!(shown.starts_with("# Explain\n"), "{shown}");
    assert!(shown.contains(answer.trim_end()), "{shown}");
    assert!(
        !server.has_notification("wellspring/chatProgress", |_| true),
        "the client did not ask for wellspring/chatProgress"
    );
}

#[test]
fn chat_reports_progress_on_the_token_the_client_gave() {
    let mut capabilities = helix_capabilities();
    capabilities["window"] = json!({});
    let mut server = ready_with(capabilities, 1500, 24);
    let id = server.send_request(
        "workspace/executeCommand",
        json!({"command": "wellspring.chat", "workDoneToken": "client-token", "arguments": [{
            "chatId": "c1", "textDocument": {"uri": URI}, "range": variance_lines(),
            "question": "What is m?"}]}),
    );
    let begin = server.notification("$/progress", |params| params["value"]["kind"] == "begin");
    assert_eq!(begin["token"], "client-token");
    server.progress_reports_until_end(&json!("client-token"));
    assert_eq!(server.response(json!(id)).unwrap()["chatId"], "c1");
    assert!(
        server
            .server_requests
            .iter()
            .all(
                |request| request["method"] != "window/workDoneProgress/create"
                    && request["method"] != "window/showDocument"
            ),
        "{:?}",
        server.server_requests
    );
}

#[test]
fn edit_with_instruction_is_offered_only_to_clients_that_can_ask_for_the_instruction() {
    let titles = |server: &mut TestServer| -> Vec<String> {
        server
            .code_actions(URI, &variance_lines())
            .iter()
            .map(|action| action["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut helix = ready(helix_capabilities(), 1500);
    let offered = titles(&mut helix);
    assert_eq!(offered.len(), 5, "{offered:?}");
    assert!(!offered.iter().any(|title| title.contains("instruction")));
    let mut vscode = ready(vscode_capabilities(), 1500);
    assert!(titles(&mut vscode)
        .iter()
        .any(|title| title.contains("Edit with instruction")));
}

#[test]
fn failed_commands_are_shown_to_the_user_and_cancelled_ones_are_not() {
    let mut server = ready(helix_capabilities(), 1500);
    let error = server
        .request(
            "workspace/executeCommand",
            json!({"command": "wellspring.explain", "arguments": [{
                "textDocument": {"uri": "file:///w/closed.txt"}, "range": variance_lines()}]}),
        )
        .unwrap_err();
    assert!(error["message"].as_str().unwrap().contains("is not open"));
    shown_error(&mut server, "is not open");

    let hold = hold_engine(&mut server, false);
    release_engine(&mut server, hold);
    // A later failure is shown, and it is the next message: the cancelled chat showed none.
    server
        .request(
            "workspace/executeCommand",
            json!({"command": "wellspring.unknown", "arguments": []}),
        )
        .unwrap_err();
    let next = server.notification("window/showMessage", |_| true);
    assert!(
        next["message"]
            .as_str()
            .unwrap()
            .contains("unknown command"),
        "{next}"
    );
}

#[test]
fn completion_asks_on_trigger_characters_where_they_mean_access() {
    let mut server = ready(helix_capabilities(), 1500);
    let triggers =
        &server.initialize_result["capabilities"]["completionProvider"]["triggerCharacters"];
    assert_eq!(*triggers, json!([".", ":", ">", "("]));
    let uri = "file:///w/main.py";
    server.open(uri, "python", "import math\nx = math.\nif x:\n");
    let complete = |server: &mut TestServer, line: u32, character: u32, trigger: &str| {
        server
            .request(
                "textDocument/completion",
                json!({"textDocument": {"uri": uri},
                       "position": {"line": line, "character": character},
                       "context": {"triggerKind": 2, "triggerCharacter": trigger}}),
            )
            .expect("completion answers")
    };
    let after_dot = complete(&mut server, 1, 9, ".");
    assert_eq!(after_dot["isIncomplete"], true, "{after_dot}");
    let after_colon = complete(&mut server, 2, 5, ":");
    assert!(
        after_colon.is_null(),
        "`:` in Python is no access: {after_colon}"
    );
}

#[test]
fn an_action_on_a_cursor_works_on_the_enclosing_definition() {
    let mut server = ready(helix_capabilities(), 0);
    // The unclosed call at the end keeps the file from parsing cleanly, so the tiny model's noise
    // is not refused as breaking the syntax.
    let uri = "file:///w/stats.py";
    let text = format!("{TEXT}print(\n");
    server.open(uri, "python", &text);
    let body_line = TEXT.lines().nth(6).unwrap();
    // Helix's cursor: a one-character selection, here on the `r` of `return`.
    let cursor = json!({"start": {"line": 6, "character": 4}, "end": {"line": 6, "character": 5}});
    let simplify = server.code_action(uri, &cursor, "Wellspring: Simplify");
    let resolved = server
        .request("codeAction/resolve", simplify)
        .expect("resolved");
    let edit = &resolved["edit"]["changes"][uri][0];
    assert_eq!(
        edit["range"],
        json!({"start": {"line": 4, "character": 0},
               "end": {"line": 6, "character": body_line.len()}}),
        "the whole of `def variance`: {resolved}"
    );
}

#[test]
fn an_edit_the_client_refused_applies_at_once_when_the_action_runs_again() {
    // Like Kate: no resolve support, and an edit from the server is refused once a command has
    // been running for two seconds, with an empty reason.
    let mut capabilities = helix_capabilities();
    capabilities["textDocument"]["codeAction"]["resolveSupport"] = Value::Null;
    let mut server = ready_with(capabilities, 1500, 24);
    server.apply_edit_answer = json!({"applied": false, "failureReason": ""});
    let command = simplify_action(&mut server)["command"].clone();
    let run = |server: &mut TestServer| {
        server.request(
            "workspace/executeCommand",
            json!({"command": command["command"], "arguments": command["arguments"]}),
        )
    };
    let error = run(&mut server).unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("run the action again"),
        "{error}"
    );
    shown_error(&mut server, "run the action again");
    let refused = server.server_request("workspace/applyEdit");
    let n_chats = |server: &mut TestServer| {
        server.request("wellspring/stats", Value::Null).unwrap()["nChats"]
            .as_u64()
            .unwrap()
    };
    let n_chats_before = n_chats(&mut server);

    // The user types elsewhere, then runs the action again: the same edit, moved, without the model.
    type_imports_above(&mut server);
    server.apply_edit_answer = json!({"applied": true});
    let applied = run(&mut server).expect("applied the second time");
    assert_eq!(
        n_chats(&mut server),
        n_chats_before,
        "the model was not asked again"
    );
    let first = unversioned_edit(&refused["params"]["edit"]);
    let second = unversioned_edit(&applied);
    assert_eq!(second["newText"], first["newText"]);
    assert_eq!(second["range"]["start"]["line"], 6, "{second}");
}
