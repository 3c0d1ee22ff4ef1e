//! Post-processing and the check that stops generation early, in-process: random documents in
//! every grammar, a random cursor, and a random completion the model "writes" one character at a
//! time. Nothing may panic, and where the check says the suggestion is complete, the suggestion
//! shown and the one the whole completion would have given agree line for line as far as both go.
//! (On real code they are equal: `context::tests`. On random text a parse that more text changes
//! can end either sooner.)

use proptest::collection::vec;
use proptest::prelude::*;
use wellspring::context::{done_check, postprocess};
use wellspring::docs::DocumentStore;
use wellspring_fuzz::{fuzz, gen, Limits};

/// What a model writes after a cursor: code, line breaks, indentation, closing brackets.
const COMPLETION_PIECES: &[&str] = &[
    "\n",
    "\n    ",
    "\n        ",
    "\n\t",
    "\n}",
    "\n    }",
    "}",
    ")",
    ";",
    "end",
    "\nend",
    "if x {",
    "if x:",
    "for i in xs:",
    "return x",
    "let y = 1;",
    "x = 2",
    "else {",
    "\r\n",
    "    ",
    "\t",
    "foo(",
    "é",
    "→",
];

fn completion_piece() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(COMPLETION_PIECES).prop_map(str::to_owned),
        1 => gen::text_piece(),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Case {
    language: (&'static str, &'static str),
    text: String,
    cursor_pick: usize,
    completion: String,
}

fn case() -> BoxedStrategy<Case> {
    (
        prop::sample::select(gen::LANGUAGES),
        vec(
            prop_oneof![
                2 => gen::text_piece(),
                1 => completion_piece(),
            ],
            0..40,
        ),
        any::<usize>(),
        vec(completion_piece(), 0..24),
    )
        .prop_map(|(language, text, cursor_pick, completion)| Case {
            language,
            text: text.concat(),
            cursor_pick,
            completion: completion.concat(),
        })
        .boxed()
}

fn run_case(case: Case) -> Result<(), TestCaseError> {
    let (language_id, uri) = case.language;
    let store = DocumentStore::new();
    let (_, needs_parse) = store.open(uri, language_id, 1, &case.text);
    if needs_parse {
        store.finish_parse(uri, 1);
    }
    let document = store.get(uri).expect("just opened");
    let mut cursor_byte = case.cursor_pick % (case.text.len() + 1);
    while !case.text.is_char_boundary(cursor_byte) {
        cursor_byte -= 1;
    }
    let whole = postprocess(&document, cursor_byte, &case.completion);
    let is_done = done_check(document.clone(), cursor_byte);
    let ends = case
        .completion
        .char_indices()
        .map(|(idx, character)| idx + character.len_utf8());
    for end in ends {
        let written = &case.completion[..end];
        if is_done(written) {
            let stopped = postprocess(&document, cursor_byte, written).unwrap_or_default();
            let whole = whole.clone().unwrap_or_default();
            let agree = stopped
                .split('\n')
                .zip(whole.split('\n'))
                .all(|(stopped_line, whole_line)| stopped_line.trim_end() == whole_line.trim_end());
            prop_assert!(
                agree,
                "stopping after {:?} shows {:?}, the whole completion {:?}",
                written,
                stopped,
                whole
            );
            break;
        }
    }
    Ok(())
}

#[test]
fn stopping_where_the_suggestion_is_complete_shows_the_same_suggestion() {
    fuzz("postprocess_early_stop", Limits::FAST, case(), |_| run_case);
}
