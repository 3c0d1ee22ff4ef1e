//! Engine logic on the fake backend: cache reuse, trimming, slot choice, cancellation,
//! typed-ahead, overflow handling and stop rules, checked as exact token counts.

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::backend::fake::{tokens, Call, Fake, FakeOptions, FakeState};
use super::scheduler::{ChatJob, Command, CompletionJob, Scheduler, Shared, TypedAhead};
use super::*;

struct Harness {
    scheduler: Scheduler<'static, Fake>,
    fake: Arc<Mutex<FakeState>>,
    chat_fake: Arc<Mutex<FakeState>>,
    shared: Arc<Shared>,
}

fn harness(options: FakeOptions) -> Harness {
    harness_drafting(options, None)
}

/// A harness whose completions have the draft model `draft` (ready at once).
fn harness_drafting(options: FakeOptions, draft: Option<Fake>) -> Harness {
    let chat_backend = Fake::new(FakeOptions {
        n_seq: 1,
        max_draft: options.max_draft,
        ..FakeOptions::default()
    });
    let backend = Fake::new(options);
    let fake = backend.state.clone();
    let chat_fake = chat_backend.state.clone();
    let mut chat_backend = Some(chat_backend);
    let shared = Arc::new(Shared::default());
    let make_draft = draft.map(|draft| {
        let mut draft = Some(draft);
        Box::new(move || Ok(draft.take())) as super::draft::MakeDraftBackend<'static, Fake>
    });
    Harness {
        scheduler: Scheduler::new(
            backend,
            Box::new(move || Ok(chat_backend.take().map(|backend| (backend, None)))),
            make_draft,
            shared.clone(),
        ),
        fake,
        chat_fake,
        shared,
    }
}

type Answer = oneshot::Receiver<Result<Completion, Error>>;
type ChatAnswer = oneshot::Receiver<Result<ChatOutcome, Error>>;

impl Harness {
    fn submit(&mut self, request: CompletionRequest) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.scheduler.submit(Command::Complete(CompletionJob {
            request,
            reply,
            submitted_at: Instant::now(),
        }));
        answer
    }

    /// Submits a chat; returns its answer and its stream of deltas.
    fn submit_chat(
        &mut self,
        request: ChatRequest,
    ) -> (ChatAnswer, mpsc::UnboundedReceiver<String>) {
        let (deltas_tx, deltas) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.scheduler.submit(Command::Chat(ChatJob {
            request,
            deltas: deltas_tx,
            reply,
        }));
        (answer, deltas)
    }

    fn run_until_idle(&mut self) {
        let mut n_steps = 0;
        loop {
            if self.scheduler.is_idle() {
                // As the engine's loop does while idle: look whether the draft model arrived.
                self.scheduler.poll_draft_model();
                if self.scheduler.is_idle() {
                    break;
                }
            }
            self.scheduler.step();
            n_steps += 1;
            assert!(n_steps < 10_000, "the scheduler does not finish");
        }
    }

    fn complete(&mut self, request: CompletionRequest) -> Completion {
        let mut answer = self.submit(request);
        self.run_until_idle();
        answer.try_recv().unwrap().unwrap()
    }

    fn reply(&self, text: &str) {
        self.fake.lock().unwrap().push_reply(text);
    }

    fn calls(&self) -> Vec<Call> {
        self.fake.lock().unwrap().take_calls()
    }
}

/// `fn main() {` with the cursor on the line below after `line_head`; 27 tokens plus the line head.
fn prompt(line_head: &str) -> FimPrompt {
    FimPrompt {
        path: "main.rs".into(),
        prefix: "fn main() {\n".into(),
        suffix: "\n}\n".into(),
        line_head: line_head.into(),
        ..FimPrompt::default()
    }
}

fn request(document: &str, prompt: FimPrompt) -> CompletionRequest {
    CompletionRequest {
        document: document.into(),
        prompt,
        max_tokens: 16,
        single_line: false,
        stop: Vec::new(),
        time_budget: Duration::from_secs(3600),
        sampling: SamplingConfig::default(),
        client: 0,
        done_when: None,
    }
}

fn evaluations(calls: &[Call]) -> Vec<(u32, u32)> {
    calls
        .iter()
        .filter_map(|call| match call {
            Call::Evaluate {
                n_past, n_tokens, ..
            } => Some((*n_past, *n_tokens)),
            _ => None,
        })
        .collect()
}

#[test]
fn healing_takes_the_last_line_head_token_back_and_leaves_it_out_of_the_answer() {
    let healing = FakeOptions {
        token_healing: true,
        ..FakeOptions::default()
    };
    let mut h = harness(healing.clone());
    // The model picks the healed `x` again, then goes on.
    h.reply("x = 1;");
    let healed = h.complete(request("a", prompt("    let x")));
    assert_eq!(healed.text, " = 1;");
    let figures = &healed.figures;
    assert_eq!(
        (figures.generation.n_prompt, figures.generation.n_generated),
        (35, 6)
    );
    assert_eq!(evaluations(&h.calls())[0], (0, 35));

    // A script that does not start with the healed text still gets it first, and the answer
    // never repeats what the document already has.
    let mut h = harness(healing);
    h.reply("= 1;");
    let healed = h.complete(request("a", prompt("    let x")));
    assert_eq!(healed.text, "= 1;");
    assert_eq!(healed.figures.generation.n_generated, 5);
}

#[test]
fn healing_takes_back_earlier_tokens_while_they_start_a_longer_token() {
    let n_prompt_unhealed = |line_head: &str| {
        let mut h = harness(FakeOptions::default());
        h.reply(";");
        h.complete(request("a", prompt(line_head)))
            .figures
            .generation
            .n_prompt
    };
    let healing = |longer_tokens: &[&str]| FakeOptions {
        token_healing: true,
        longer_tokens: longer_tokens.iter().map(|it| it.to_string()).collect(),
        ..FakeOptions::default()
    };
    // `xy` starts the vocabulary's `xyz`, ` xy` starts nothing: two tokens go back.
    let mut h = harness(healing(&["xyz"]));
    h.reply("xyz = 1;");
    let healed = h.complete(request("a", prompt("    let xy")));
    assert_eq!(healed.text, "z = 1;");
    assert_eq!(
        healed.figures.generation.n_prompt,
        n_prompt_unhealed("    let xy") - 2
    );

    // Never more than three.
    let mut h = harness(healing(&["cdz", "bcdz", "abcdz"]));
    h.reply("bcdz;");
    let healed = h.complete(request("a", prompt("    abcd")));
    assert_eq!(healed.text, "z;");
    assert_eq!(
        healed.figures.generation.n_prompt,
        n_prompt_unhealed("    abcd") - 3
    );
}

#[test]
fn a_keystroke_reuses_the_cache_and_evaluates_one_token() {
    let mut h = harness(FakeOptions::default());
    h.reply("= 1;");
    let first = h.complete(request("a", prompt("    let x")));
    assert_eq!(first.text, "= 1;");
    let figures = &first.figures;
    assert_eq!(
        (
            figures.generation.n_prompt,
            figures.generation.n_reused,
            figures.generation.n_evaluated,
            figures.generation.n_generated
        ),
        (36, 0, 36, 4)
    );
    assert_eq!(figures.stop, StopReason::EndOfGeneration);
    // The prompt in one batch, then one evaluate per generated token but the last.
    assert_eq!(
        evaluations(&h.calls()),
        vec![(0, 36), (36, 1), (37, 1), (38, 1), (39, 1)]
    );

    h.reply("y;");
    let second = h.complete(request("a", prompt("    let x ")));
    assert_eq!(second.text, "y;");
    let figures = &second.figures;
    assert_eq!(
        (
            figures.generation.n_prompt,
            figures.generation.n_reused,
            figures.generation.n_evaluated
        ),
        (37, 36, 1)
    );
    assert!(!figures.served_without_inference);
    let calls = h.calls();
    assert_eq!(calls[0], Call::Trim { seq: 0, n_keep: 36 });
    assert_eq!(evaluations(&calls)[0], (36, 1));
}

#[test]
fn prefill_runs_in_batches() {
    let mut h = harness(FakeOptions {
        n_batch: 16,
        ..FakeOptions::default()
    });
    h.reply("");
    let completion = h.complete(request("a", prompt("    let x")));
    assert_eq!(completion.figures.generation.n_evaluated, 36);
    assert_eq!(evaluations(&h.calls()), vec![(0, 16), (16, 16), (32, 4)]);
}

#[test]
fn failed_partial_trim_evaluates_the_whole_prompt_again() {
    let mut h = harness(FakeOptions {
        partial_trim_fails: true,
        ..FakeOptions::default()
    });
    h.reply("= 1;");
    h.complete(request("a", prompt("    let x")));
    h.calls();
    h.reply("");
    let second = h.complete(request("a", prompt("    let x ")));
    assert_eq!(
        (
            second.figures.generation.n_reused,
            second.figures.generation.n_evaluated
        ),
        (0, 37)
    );
    let calls = h.calls();
    assert_eq!(
        calls[..3],
        [
            Call::Trim { seq: 0, n_keep: 36 },
            Call::Clear { seq: 0 },
            Call::Evaluate {
                seq: 0,
                n_past: 0,
                n_tokens: 37
            }
        ]
    );
}

#[test]
fn documents_get_their_own_slots_and_the_oldest_is_evicted() {
    let mut h = harness(FakeOptions {
        n_seq: 2,
        ..FakeOptions::default()
    });
    let other = |line_head: &str| FimPrompt {
        path: "other.rs".into(),
        ..prompt(line_head)
    };
    let third = |line_head: &str| FimPrompt {
        path: "third.rs".into(),
        prefix: "struct S;\n".into(),
        ..prompt(line_head)
    };
    h.reply("");
    assert_eq!(h.complete(request("a", prompt("x"))).figures.slot, Some(0));
    h.reply("");
    let b = h.complete(request("b", other("x")));
    assert_eq!(
        (b.figures.slot, b.figures.generation.n_reused),
        (Some(1), 0)
    );
    // Back to "a": its slot still holds its prompt.
    h.reply("");
    let a = h.complete(request("a", prompt("xy")));
    assert_eq!(
        (
            a.figures.slot,
            a.figures.generation.n_reused,
            a.figures.generation.n_evaluated
        ),
        (Some(0), 28, 1)
    );
    // A third document evicts the least recently used slot, b's.
    h.reply("");
    let c = h.complete(request("c", third("x")));
    assert_eq!(
        (c.figures.slot, c.figures.generation.n_reused),
        (Some(1), 1)
    );
}

#[test]
fn newer_request_for_the_same_document_supersedes_the_running_one() {
    let mut h = harness(FakeOptions {
        n_batch: 8,
        ..FakeOptions::default()
    });
    let mut first = h.submit(request("a", prompt("    let x")));
    h.scheduler.step(); // starts it
    h.scheduler.step(); // evaluates 8 tokens
    h.scheduler.step(); // evaluates 8 more
    let other_prompt = FimPrompt {
        path: "other.rs".into(),
        ..prompt("    let x")
    };
    let mut other_document = h.submit(request("b", other_prompt));
    h.reply("");
    h.reply("");
    let mut second = h.submit(request("a", prompt("    let xy")));
    assert_eq!(first.try_recv().unwrap(), Err(Error::Superseded));
    h.run_until_idle();
    // "b" was not touched by "a"'s newer request, and ran first.
    assert!(other_document.try_recv().unwrap().is_ok());
    let second = second.try_recv().unwrap().unwrap();
    // It reuses the 16 tokens the superseded request had evaluated.
    assert_eq!(
        (
            second.figures.generation.n_prompt,
            second.figures.generation.n_reused
        ),
        (37, 16)
    );
    assert_eq!(h.shared.stats().n_superseded, 1);
}

#[test]
fn abandoned_request_stops_at_the_next_step() {
    let mut h = harness(FakeOptions::default());
    let answer = h.submit(request("a", prompt("    let x")));
    h.scheduler.step(); // starts it
    h.scheduler.step(); // prefill
    h.scheduler.step(); // first token
    h.calls();
    drop(answer);
    h.scheduler.step();
    assert!(h.scheduler.is_idle());
    assert_eq!(h.calls(), vec![]);
    assert_eq!(h.shared.stats().n_abandoned, 1);
}

#[test]
fn prompt_is_cut_and_generation_stops_before_the_context_overflows() {
    let mut h = harness(FakeOptions {
        n_ctx_per_seq: 64,
        ..FakeOptions::default()
    });
    let long = FimPrompt {
        prefix: "let a = 1;\n".repeat(20),
        ..prompt("    ")
    };
    let mut long_request = request("a", long);
    long_request.max_tokens = 1000;
    // No scripted reply: the fake writes `x` forever.
    let completion = h.complete(long_request);
    let figures = &completion.figures;
    assert!(figures.truncated);
    // Half the context is kept for generation.
    assert_eq!(figures.generation.n_prompt, 32);
    assert_eq!(figures.stop, StopReason::ContextFull);
    // 32 generated tokens fill the sequence; the 33rd is sampled but has no room.
    assert_eq!(figures.generation.n_generated, 33);
    assert_eq!(h.fake.lock().unwrap().contents[0].len(), 64);
}

#[test]
fn single_line_requests_stop_at_the_end_of_the_line() {
    let mut h = harness(FakeOptions::default());
    let mut single = request("a", prompt("    foo("));
    single.single_line = true;
    h.reply("x, y)\n    bar()");
    let completion = h.complete(single);
    assert_eq!(completion.text, "x, y)");
    assert_eq!(completion.figures.stop, StopReason::EndOfLine);
    assert_eq!(completion.figures.generation.n_generated, 6);

    h.reply("x, y)\n    bar()");
    let completion = h.complete(request("b", prompt("    foo(")));
    assert_eq!(completion.text, "x, y)\n    bar()");
}

/// A prompt with ten more lines above the cursor than `prompt`'s: several warming chunks long.
fn long_prompt(line_head: &str) -> FimPrompt {
    FimPrompt {
        prefix: format!("fn main() {{\n{}", "    let a = 1;\n".repeat(10)),
        ..prompt(line_head)
    }
}

/// `long_prompt("x")` in the file at `path`.
fn long_prompt_at(path: &str) -> FimPrompt {
    FimPrompt {
        path: path.into(),
        ..long_prompt("x")
    }
}

fn warm(h: &mut Harness, document: &str, line_head: &str) {
    h.scheduler
        .submit(Command::Warm(request(document, long_prompt(line_head))));
}

/// Warming evaluates the prompt in chunks of at most 64 tokens, generates nothing, and the next
/// keystroke in that document evaluates only the character typed.
#[test]
fn warming_caches_the_prompt_and_the_keystroke_evaluates_one_token() {
    let mut h = harness(FakeOptions::default());
    warm(&mut h, "a", "    ");
    h.run_until_idle();
    let warmed = evaluations(&h.calls());
    let n_warmed: u32 = warmed.iter().map(|(_, n_tokens)| n_tokens).sum();
    assert_eq!(n_warmed, 181);
    assert_eq!(warmed, [(0, 64), (64, 64), (128, 53)]);
    assert_eq!(h.shared.stats().n_tokens_warmed, 181);
    assert_eq!(h.shared.stats().n_warmings, 1);
    assert_eq!(h.shared.stats().n_completions, 0);
    // Warming what is cached already evaluates nothing.
    warm(&mut h, "a", "    ");
    h.run_until_idle();
    assert_eq!(evaluations(&h.calls()), []);
    assert_eq!(h.shared.stats().n_warmings, 1);

    h.reply("t x = 2;");
    let completion = h.complete(request("a", long_prompt("    l")));
    assert_eq!(completion.figures.generation.n_reused, 181);
    assert_eq!(completion.figures.generation.n_evaluated, 1);
    assert_eq!(completion.text, "t x = 2;");
}

/// A completion for another document runs before the rest of a warming, which then goes on from
/// the chunk it had reached; one for the warmed document replaces the warming and reuses what it
/// had evaluated.
#[test]
fn completions_preempt_warming() {
    let mut h = harness(FakeOptions::default());
    warm(&mut h, "a", "    ");
    h.scheduler.step();
    assert_eq!(evaluations(&h.calls()), [(0, 64)]);
    h.reply("1");
    let elsewhere = FimPrompt {
        path: "other.rs".into(),
        ..prompt("    let b = ")
    };
    let other = h.complete(request("b", elsewhere));
    assert_eq!(other.text, "1");
    let calls = h.calls();
    let seqs: Vec<u32> = calls
        .iter()
        .filter_map(|call| match call {
            Call::Evaluate { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    // Document b's prompt in a slot of its own, then a's warming from position 64.
    assert_eq!(evaluations(&calls), [(0, 40), (40, 1), (64, 64), (128, 53)]);
    assert_ne!(seqs[0], seqs[2]);
    assert_eq!(h.shared.stats().n_tokens_warmed, 181);

    let third = |line_head: &str| FimPrompt {
        path: "third.rs".into(),
        ..long_prompt(line_head)
    };
    h.scheduler
        .submit(Command::Warm(request("c", third("    "))));
    h.scheduler.step();
    // The least recently used slot, whose first token (the FIM prefix) it shares.
    assert_eq!(evaluations(&h.calls()), [(1, 64)]);
    h.reply("t");
    let same = h.complete(request("c", third("    l")));
    assert_eq!(same.figures.generation.n_reused, 65);
    assert_eq!(same.figures.generation.n_evaluated, 183 - 65);
    // Nothing is warmed after it: the keystroke's prompt replaced the warming.
    assert!(h.scheduler.is_idle());
    assert_eq!(h.shared.stats().n_tokens_warmed, 181 + 64);
}

/// The request's `done_when` is asked where a suggestion can become complete (a line's end, a
/// line's first character that is not a space) and nowhere else; generation stops at the token
/// it accepts, so nothing after it is generated.
#[test]
fn completions_stop_at_the_token_that_completes_the_suggestion() {
    let mut h = harness(FakeOptions::default());
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut block = request("a", prompt("    "));
    block.max_tokens = 200;
    let asked_in_check = Arc::clone(&asked);
    block.done_when = Some(DoneCheck::new(move |text| {
        asked_in_check.lock().unwrap().push(text.to_owned());
        text.ends_with("}\n")
    }));
    h.reply("if x {\n        y();\n    }\n    z();\n    w();\n");
    let completion = h.complete(block);
    assert_eq!(completion.text, "if x {\n        y();\n    }\n");
    assert_eq!(completion.figures.stop, StopReason::SuggestionComplete);
    // One token a character: every character up to the accepting newline, and no more.
    assert_eq!(completion.figures.generation.n_generated, 26);
    assert_eq!(completion.token_ends.len(), 26);
    assert_eq!(completion.token_ends.last(), Some(&26));
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "i",
            "if x {\n",
            "if x {\n        y",
            "if x {\n        y();\n",
            "if x {\n        y();\n    }",
            "if x {\n        y();\n    }\n",
        ]
    );
}

#[test]
fn multi_line_completions_stop_before_repeating_the_line_below() {
    let mut h = harness(FakeOptions::default());
    let mean = FimPrompt {
        prefix: "def mean(values):\n".into(),
        suffix: "\n\n    return total / len(values)\n".into(),
        ..prompt("    total = ")
    };
    h.reply("0\n    for value in values:\n        total += value\n    return total / len(values)\n\ndef");
    let mut long = request("a", mean.clone());
    long.max_tokens = 200;
    let completion = h.complete(long);
    assert_eq!(
        completion.text,
        "0\n    for value in values:\n        total += value"
    );
    assert_eq!(completion.figures.stop, StopReason::SuffixReached);
    // A line that only starts like the suffix line is kept.
    h.reply("0\n    return total / len(values) + 1\n");
    let mut long = request("b", mean);
    long.max_tokens = 200;
    let completion = h.complete(long);
    assert_eq!(completion.text, "0\n    return total / len(values) + 1\n");
}

#[test]
fn stop_strings_max_tokens_and_time_budget_end_generation() {
    let mut h = harness(FakeOptions::default());
    let mut with_stop = request("a", prompt("    "));
    with_stop.stop = vec!["//".into()];
    h.reply("call(); // done");
    let completion = h.complete(with_stop);
    assert_eq!(
        (completion.text.as_str(), completion.figures.stop),
        ("call(); ", StopReason::StopString)
    );

    let mut short = request("b", prompt("    "));
    short.max_tokens = 3;
    let completion = h.complete(short);
    assert_eq!(
        (completion.text.as_str(), completion.figures.stop),
        ("xxx", StopReason::MaxTokens)
    );

    let mut no_time = request("c", prompt("    "));
    no_time.time_budget = Duration::ZERO;
    let completion = h.complete(no_time);
    assert_eq!(completion.figures.stop, StopReason::TimeBudget);
    // Same prompt as "b": all but its last token come from the cache.
    assert_eq!(
        (
            completion.figures.generation.n_evaluated,
            completion.figures.generation.n_generated
        ),
        (1, 0)
    );
}

#[test]
fn multibyte_characters_split_across_tokens_come_out_whole() {
    let mut h = harness(FakeOptions::default());
    h.reply("é€🦀");
    assert_eq!(h.complete(request("a", prompt(""))).text, "é€🦀");
    // Cut inside a character: the half character is dropped, never garbled.
    let mut cut = request("b", prompt(""));
    cut.max_tokens = 3;
    h.reply("é€");
    assert_eq!(h.complete(cut).text, "é");
}

#[test]
fn models_without_fim_tokens_and_empty_prompts() {
    let mut h = harness(FakeOptions {
        has_fim: false,
        ..FakeOptions::default()
    });
    h.reply("1");
    let completion = h.complete(request("a", prompt("let x = ")));
    // "fn main() {\n" and the line head only.
    assert_eq!(completion.figures.generation.n_prompt, 20);
    let empty = h.complete(request("b", FimPrompt::default()));
    assert_eq!(
        (empty.text.as_str(), empty.figures.stop),
        ("", StopReason::EmptyPrompt)
    );
}

#[test]
fn typed_ahead_matches_only_the_same_context_and_a_typed_prefix() {
    let mut typed_ahead = TypedAhead::default();
    typed_ahead.remember("a", &prompt("    let x"), " = foo();");
    let check = |prompt: FimPrompt, expect: Option<&str>| {
        assert_eq!(typed_ahead.lookup("a", &prompt).as_deref(), expect);
    };
    check(prompt("    let x"), Some(" = foo();"));
    check(prompt("    let x = f"), Some("oo();"));
    check(prompt("    let x = g"), None);
    check(prompt("    let x = foo();"), None);
    check(prompt("    let"), None);
    let mut moved = prompt("    let x = f");
    moved.suffix.push('\n');
    check(moved, None);
    assert_eq!(typed_ahead.lookup("b", &prompt("    let x")), None);
}

#[test]
fn chat_streams_and_completions_run_between_its_steps() {
    let mut h = harness(FakeOptions::default());
    h.chat_fake.lock().unwrap().push_reply("hello there");
    let (deltas_tx, mut deltas) = mpsc::unbounded_channel();
    let (reply, mut chat_answer) = oneshot::channel();
    h.scheduler.submit(Command::Chat(ChatJob {
        request: ChatRequest {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }],
            max_tokens: 100,
            grammar: None,
            sampling: SamplingConfig::default(),
        },
        deltas: deltas_tx,
        reply,
    }));
    for _ in 0..4 {
        h.scheduler.step(); // start, prefill, 2 tokens
    }
    assert_eq!(deltas.try_recv().unwrap(), "h");
    assert_eq!(deltas.try_recv().unwrap(), "e");
    let n_chat_calls = h.chat_fake.lock().unwrap().calls.len();
    // A completion arrives: it runs to the end before the chat takes another step.
    h.reply("ok");
    let mut completion = h.submit(request("a", prompt("x")));
    while completion.try_recv().is_err() {
        h.scheduler.step();
    }
    assert_eq!(h.chat_fake.lock().unwrap().calls.len(), n_chat_calls);
    h.run_until_idle();
    let outcome = chat_answer.try_recv().unwrap().unwrap();
    assert_eq!(outcome.text, "hello there");
    assert_eq!(
        outcome.generation.n_prompt,
        "<user>hi\n<assistant>".len() as u32
    );
    let mut streamed = String::from("he");
    while let Ok(delta) = deltas.try_recv() {
        streamed += &delta;
    }
    assert_eq!(streamed, "hello there");
}

fn chat(grammar: Option<&str>) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }],
        max_tokens: 1000,
        grammar: grammar.map(str::to_owned),
        sampling: SamplingConfig::default(),
    }
}

#[test]
fn chat_stops_when_its_caller_goes_away_and_rejects_bad_grammars() {
    let mut h = harness(FakeOptions::default());
    let (answer, deltas) = h.submit_chat(chat(None));
    for _ in 0..5 {
        h.scheduler.step();
    }
    drop(answer);
    drop(deltas);
    h.scheduler.step();
    assert!(h.scheduler.is_idle());
    assert_eq!(h.shared.stats().n_abandoned, 1);

    let (mut answer, _deltas) = h.submit_chat(chat(Some("start ::= \"a\"")));
    h.run_until_idle();
    assert!(matches!(answer.try_recv().unwrap(), Err(Error::Grammar(_))));
}

#[test]
fn chats_wait_for_a_chat_model_still_loading_while_completions_go_on() {
    let mut h = harness(FakeOptions::default());
    let arrived = Arc::new(AtomicBool::new(false));
    let chat_backend = Fake::new(FakeOptions {
        n_seq: 1,
        ..FakeOptions::default()
    });
    let mut chat_backend = Some(chat_backend);
    let model_arrived = arrived.clone();
    h.scheduler = Scheduler::new(
        Fake::new(FakeOptions::default()),
        Box::new(move || {
            Ok(if model_arrived.load(AtomicOrdering::SeqCst) {
                chat_backend.take().map(|backend| (backend, None))
            } else {
                None
            })
        }),
        None,
        h.shared.clone(),
    );
    let (mut answer, _deltas) = h.submit_chat(chat(None));
    for _ in 0..3 {
        h.scheduler.step();
    }
    assert!(h.scheduler.waits_for_chat_model());
    assert!(answer.try_recv().is_err(), "the chat waits for its model");

    // A completion meanwhile is served at once.
    let mut completion = h.submit(request("file:///a.rs", prompt("fn main() {")));
    assert!(!h.scheduler.waits_for_chat_model());
    while completion.try_recv().is_err() {
        h.scheduler.step();
    }
    assert!(h.scheduler.waits_for_chat_model());

    arrived.store(true, AtomicOrdering::SeqCst);
    h.run_until_idle();
    let outcome = answer.try_recv().unwrap().unwrap();
    assert!(outcome.generation.n_generated > 0, "{outcome:?}");
}

/// The async façade over a fake engine thread.
fn fake_engine(options: FakeOptions) -> (Engine, Arc<Mutex<FakeState>>) {
    let backend = Fake::new(options);
    let state = backend.state.clone();
    let shared = Arc::new(Shared::default());
    let commands = thread::spawn_fake(
        backend,
        Fake::new(FakeOptions {
            n_seq: 1,
            ..FakeOptions::default()
        }),
        shared.clone(),
    );
    let started = Started {
        caps: ModelCaps {
            has_fim: true,
            has_file_sep: true,
            has_repo_name: true,
            n_ctx_per_slot: 256,
        },
        token_counter: Arc::new(ByteCounter),
        placement: Placement::cpu("fake"),
        n_ctx_chat: 256,
    };
    (
        Engine::from_parts(commands, started, shared, Path::new("fake.gguf")),
        state,
    )
}

/// An idle engine thread lets the backend look at the machine's load for as long as it asks
/// (`Backend::watch_load`, every `cpu_share::INTERVAL`), then waits for commands alone.
#[tokio::test]
async fn an_idle_engine_watches_the_load_only_while_the_backend_asks() {
    let (engine, state) = fake_engine(FakeOptions {
        load_watches_after_step: 2,
        ..FakeOptions::default()
    });
    let (listener, mut watches) = mpsc::unbounded_channel();
    state.lock().unwrap().load_watches = Some(listener);
    let request = CompletionRequest {
        document: "a.rs".into(),
        prompt: FimPrompt {
            prefix: "fn a".into(),
            ..FimPrompt::default()
        },
        max_tokens: 2,
        single_line: false,
        stop: Vec::new(),
        time_budget: Duration::from_secs(5),
        sampling: SamplingConfig::default(),
        client: 0,
        done_when: None,
    };
    engine.complete(request).await.unwrap();
    // Once at start (nothing evaluated yet: no more; it may have come before the listener),
    // then after the completion twice asking again and once not.
    let mut seen = Vec::new();
    while seen.last() != Some(&4) {
        seen.push(watches.recv().await.unwrap());
    }
    assert!(seen == [2, 3, 4] || seen == [1, 2, 3, 4], "{seen:?}");
    assert!(watches.try_recv().is_err());
    assert!(state
        .lock()
        .unwrap()
        .calls
        .iter()
        .any(|call| matches!(call, Call::Evaluate { .. } | Call::Batch { .. })));
}

struct ByteCounter;

impl TokenCounter for ByteCounter {
    fn count_tokens(&self, text: &str) -> usize {
        tokens(text).len()
    }
}

#[tokio::test]
async fn typing_into_the_suggestion_is_served_without_inference() {
    let (engine, state) = fake_engine(FakeOptions::default());
    state.lock().unwrap().push_reply(" = foo();");
    let first = engine
        .complete(request("a", prompt("    let x")))
        .await
        .unwrap();
    assert_eq!(first.text, " = foo();");
    state.lock().unwrap().take_calls();

    let typed = engine
        .complete(request("a", prompt("    let x = f")))
        .await
        .unwrap();
    assert_eq!(typed.text, "oo();");
    assert!(typed.figures.served_without_inference);
    assert_eq!(typed.figures.stop, StopReason::TypedAhead);
    assert_eq!(typed.figures.generation.n_evaluated, 0);

    // Typing something else needs the model again.
    state.lock().unwrap().push_reply("1;");
    let other = engine
        .complete(request("a", prompt("    let x = 2")))
        .await
        .unwrap();
    assert_eq!(other.text, "1;");
    assert!(!other.figures.served_without_inference);
    // The cache holds the prompt and the suggestion, and " = " of the new line head matches it.
    assert_eq!(evaluations(&state.lock().unwrap().calls)[0], (39, 1));
    let stats = engine.stats().await;
    assert_eq!(
        (stats.n_completions, stats.n_served_without_inference),
        (3, 1)
    );
    assert_eq!(stats.recent.len(), 3);
    assert_eq!(engine.backend_name(), "fake");
    assert_eq!(engine.token_counter().count_tokens("abc"), 3);
}

#[test]
fn engine_handles_are_cheap_to_share_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Engine>();
}

#[test]
fn chat_prefill_takes_small_steps_while_the_user_types() {
    fn chat_prefill_chunks(h: &mut Harness) -> Vec<(u32, u32)> {
        h.chat_fake.lock().unwrap().push_reply("ok");
        let (deltas, _deltas_rx) = mpsc::unbounded_channel();
        let (reply, mut answer) = oneshot::channel();
        h.scheduler.submit(Command::Chat(ChatJob {
            request: ChatRequest {
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: "a".repeat(100),
                }],
                max_tokens: 8,
                grammar: None,
                sampling: SamplingConfig::default(),
            },
            deltas,
            reply,
        }));
        h.run_until_idle();
        assert_eq!(answer.try_recv().unwrap().unwrap().text, "ok");
        let calls = h.chat_fake.lock().unwrap().take_calls();
        evaluations(&calls)
            .into_iter()
            .filter(|(_, n_tokens)| *n_tokens > 1)
            .collect()
    }
    // "<user>" + 100 characters + "\n<assistant>": 118 tokens.
    let mut idle = harness(FakeOptions::default());
    assert_eq!(chat_prefill_chunks(&mut idle), vec![(0, 64), (64, 54)]);

    let mut typing = harness(FakeOptions::default());
    typing.reply("x");
    typing.complete(request("a", prompt("    let x")));
    assert_eq!(
        chat_prefill_chunks(&mut typing),
        vec![(0, 32), (32, 32), (64, 32), (96, 22)]
    );
}

/// Completes `a` (`xyz`) and `b` (`12`, its path a token longer) submitted together, on a
/// machine fast enough for both prompts in one step (64 tokens measured at 16 ms).
fn complete_two_documents_at_once(h: &mut Harness) {
    h.scheduler.record_prompt_pace(64, 16.0);
    let other = FimPrompt {
        path: "other.rs".into(),
        ..prompt("x")
    };
    h.reply("xyz");
    h.reply("12");
    let mut a = h.submit(request("a", prompt("x")));
    let mut b = h.submit(request("b", other));
    h.run_until_idle();
    assert_eq!(a.try_recv().unwrap().unwrap().text, "xyz");
    assert_eq!(b.try_recv().unwrap().unwrap().text, "12");
}

/// Two documents in flight share every step: one batch carries both prompts, then both next
/// tokens, until one ends and the other goes on alone.
#[test]
fn completions_for_different_documents_decode_together_one_batch_a_step() {
    let mut h = harness(FakeOptions {
        n_seq: 2,
        ..FakeOptions::default()
    });
    complete_two_documents_at_once(&mut h);
    assert_eq!(
        h.calls(),
        vec![
            // Both prompts in one pass ("other.rs" is a token longer than "main.rs"); each
            // samples its first token from its own logits.
            Call::Batch {
                inputs: vec![(0, 0, 28), (1, 0, 29)]
            },
            Call::Batch {
                inputs: vec![(0, 28, 1), (1, 29, 1)]
            },
            // "b" samples its end here; "a" goes on alone.
            Call::Batch {
                inputs: vec![(0, 29, 1), (1, 30, 1)]
            },
            Call::Evaluate {
                seq: 0,
                n_past: 30,
                n_tokens: 1
            },
        ]
    );
    let stats = h.shared.stats().clone();
    assert_eq!(
        (
            stats.n_batches,
            stats.n_batched_sequences,
            stats.n_batched_tokens
        ),
        (3, 6, 61)
    );
}

/// Where a step of two sequences costs more than two steps of one (llama.cpp on some CPUs), the
/// decoding sequences take turns, the one that waited longest first; prompts still go together.
#[test]
fn decoding_completions_take_turns_where_a_batch_costs_more_than_its_steps_alone() {
    let mut h = harness(FakeOptions {
        n_seq: 2,
        ..FakeOptions::default()
    });
    h.scheduler.record_batch_step(2, 52.0);
    h.scheduler.record_batch_step(1, 19.0);
    complete_two_documents_at_once(&mut h);
    let batch = |inputs: &[(u32, u32, u32)]| Call::Batch {
        inputs: inputs.to_vec(),
    };
    assert_eq!(
        h.calls(),
        vec![
            batch(&[(0, 0, 28), (1, 0, 29)]),
            // Then a token each, in turns.
            batch(&[(0, 28, 1)]),
            batch(&[(1, 29, 1)]),
            batch(&[(0, 29, 1)]),
            // "b" samples its end after its `2`; "a" goes on alone.
            batch(&[(1, 30, 1)]),
            Call::Evaluate {
                seq: 0,
                n_past: 30,
                n_tokens: 1
            },
        ]
    );
}

/// A long prompt arriving while another completion decodes joins one of its steps in four, 32
/// tokens at a time (until a step is measured), after the decoding token: the decode never waits
/// for the whole prompt, and most of its steps carry its token alone.
#[test]
fn a_prompt_joins_a_running_decode_in_small_chunks() {
    let mut h = harness(FakeOptions {
        n_seq: 2,
        ..FakeOptions::default()
    });
    h.reply("abcdefghijklmnop");
    let mut a = h.submit(request("a", prompt("x")));
    h.scheduler.step(); // starts it
    h.scheduler.step(); // its prompt
    h.scheduler.step(); // its first token
    h.calls();
    h.reply("");
    let mut b = h.submit(request("b", long_prompt_at("long.rs")));
    h.run_until_idle();
    assert_eq!(a.try_recv().unwrap().unwrap().text, "abcdefghijklmnop");
    assert_eq!(b.try_recv().unwrap().unwrap().text, "");
    let calls = h.calls();
    let batches: Vec<Vec<(u32, u32, u32)>> = calls
        .iter()
        .filter_map(|call| match call {
            Call::Batch { inputs } => Some(inputs.clone()),
            _ => None,
        })
        .collect();
    // "a"'s last 15 tokens, one a step; "b"'s 178 prompt tokens join every fourth step.
    let expected: Vec<Vec<(u32, u32, u32)>> = (0..15u32)
        .map(|step| {
            let mut inputs = vec![(0, 28 + step, 1)];
            if step % 4 == 0 {
                inputs.push((1, 32 * (step / 4), 32));
            }
            inputs
        })
        .collect();
    assert_eq!(batches, expected);
    // Then "b" alone, still in short steps since "a" typed just now.
    assert_eq!(evaluations(&calls), [(128, 32), (160, 18)]);
}

/// A prompt goes a whole batch a step while no other document typed lately; while one did, a step
/// takes what fits the step budget at the measured pace (32 tokens until a step is measured), so
/// the other document's next keystroke does not wait behind a long step.
#[test]
fn a_prompt_takes_short_steps_while_another_document_types() {
    let options = FakeOptions {
        n_seq: 3,
        ..FakeOptions::default()
    };
    let mut alone = harness(options.clone());
    alone.reply("");
    alone.complete(request("a", long_prompt_at("a.rs")));
    assert_eq!(evaluations(&alone.calls()), [(0, 64), (64, 64), (128, 47)]);

    let mut h = harness(options);
    h.reply("");
    h.complete(request("b", prompt("x")));
    h.calls();
    h.reply("");
    h.complete(request("a", long_prompt_at("a.rs")));
    assert_eq!(
        evaluations(&h.calls()),
        [(0, 32), (32, 32), (64, 32), (96, 32), (128, 32), (160, 15)]
    );
    // Measured: 200 ms for 32 tokens, so 40 tokens fill the 250 ms budget.
    h.scheduler.record_prompt_pace(32, 200.0);
    h.reply("");
    h.complete(request("c", long_prompt_at("c.rs")));
    assert_eq!(
        evaluations(&h.calls()),
        [(0, 40), (40, 40), (80, 40), (120, 40), (160, 15)]
    );
}

/// Prompts in flight together share one short step, the shortest first: two long prompts are
/// evaluated one after the other, 32 tokens a step until a step is measured, and the second
/// takes what the first leaves of its last step.
#[test]
fn prompts_in_flight_together_share_a_short_step_the_shortest_first() {
    let mut h = harness(FakeOptions {
        n_seq: 2,
        ..FakeOptions::default()
    });
    h.reply("");
    h.reply("");
    let mut a = h.submit(request("a", long_prompt_at("a/longer/path.rs")));
    let mut b = h.submit(request("b", long_prompt_at("b.rs")));
    h.run_until_idle();
    assert_eq!(a.try_recv().unwrap().unwrap().text, "");
    assert_eq!(b.try_recv().unwrap().unwrap().text, "");
    let batch = |inputs: &[(u32, u32, u32)]| Call::Batch {
        inputs: inputs.to_vec(),
    };
    assert_eq!(
        h.calls(),
        vec![
            // "b" (175 tokens) is the shorter.
            batch(&[(1, 0, 32)]),
            batch(&[(1, 32, 32)]),
            batch(&[(1, 64, 32)]),
            batch(&[(1, 96, 32)]),
            batch(&[(1, 128, 32)]),
            batch(&[(1, 160, 15), (0, 0, 17)]),
            // "b" samples its end; "a" goes on alone, in short steps still, since "b" typed
            // just now.
            Call::Evaluate {
                seq: 0,
                n_past: 17,
                n_tokens: 32
            },
            Call::Evaluate {
                seq: 0,
                n_past: 49,
                n_tokens: 32
            },
            Call::Evaluate {
                seq: 0,
                n_past: 81,
                n_tokens: 32
            },
            Call::Evaluate {
                seq: 0,
                n_past: 113,
                n_tokens: 32
            },
            Call::Evaluate {
                seq: 0,
                n_past: 145,
                n_tokens: 32
            },
            Call::Evaluate {
                seq: 0,
                n_past: 177,
                n_tokens: 10
            },
        ]
    );
}

/// With every slot busy and enough waiting, a new completion is refused at once.
#[test]
fn a_full_engine_answers_busy_instead_of_queueing_without_bound() {
    let mut h = harness(FakeOptions {
        n_seq: 1,
        ..FakeOptions::default()
    });
    let mut running = h.submit(request("running", prompt("x")));
    h.scheduler.step(); // starts it: the only slot is taken
    let waiting: Vec<Answer> = (0..4)
        .map(|idx| h.submit(request(&format!("waiting-{idx}"), prompt("x"))))
        .collect();
    let mut refused = h.submit(request("one-too-many", prompt("x")));
    assert_eq!(refused.try_recv().unwrap(), Err(Error::Busy));
    assert_eq!(h.shared.stats().n_busy, 1);
    h.run_until_idle();
    assert!(running.try_recv().unwrap().is_ok());
    for mut answer in waiting {
        assert!(answer.try_recv().unwrap().is_ok());
    }
}

/// Requests reach the engine in the order `complete` was called, however their futures are then
/// awaited: the newest keystroke for a document wins even when its future is polled first (as
/// the shared engine's tasks, one per request, may be).
#[tokio::test]
async fn the_newest_call_wins_whatever_order_the_futures_run_in() {
    let (engine, state) = fake_engine(FakeOptions::default());
    state.lock().unwrap().push_reply("1");
    state.lock().unwrap().push_reply("2");
    let older = engine.complete(request("a", prompt("    let x")));
    let newer = engine.complete(request("a", prompt("    let xy")));
    let newer = tokio::spawn(newer).await.unwrap();
    let older = tokio::spawn(older).await.unwrap();
    assert_eq!(older, Err(Error::Superseded));
    assert!(newer.is_ok(), "{newer:?}");
}

/// `x = foo(bar, baz);` above a line `y = foo(` that the scripted model completes with
/// `bar, baz);`: code that repeats itself, as prompt lookup expects.
fn repeating_prompt() -> FimPrompt {
    FimPrompt {
        path: "main.py".into(),
        prefix: "x = foo(bar, baz);\n".into(),
        suffix: "\n".into(),
        line_head: "y = foo(".into(),
        ..FimPrompt::default()
    }
}

fn speculating(max_draft: usize) -> FakeOptions {
    FakeOptions {
        max_draft,
        ..FakeOptions::default()
    }
}

/// The sizes of the `evaluate_each` calls a fake logged since its calls were last taken.
fn verifications(fake: &Mutex<FakeState>) -> Vec<u32> {
    fake.lock()
        .unwrap()
        .take_calls()
        .iter()
        .filter_map(|call| match call {
            Call::EvaluateEach { n_tokens, .. } => Some(*n_tokens),
            _ => None,
        })
        .collect()
}

#[test]
fn prompt_lookup_drafts_are_checked_in_one_batch_and_the_text_is_the_same() {
    let mut plain = harness(speculating(0));
    plain.reply("bar, baz);");
    let expected = plain.complete(request("a", repeating_prompt()));
    assert_eq!(expected.text, "bar, baz);");
    assert!(verifications(&plain.fake).is_empty());

    let mut h = harness(speculating(8));
    h.reply("bar, baz);");
    let completion = h.complete(request("a", repeating_prompt()));
    assert_eq!(completion.text, expected.text);
    assert_eq!(completion.figures.generation.n_generated, 10);
    // The prompt ends with the line head `y = foo(`. `b` comes from the prompt's logits; after
    // it, `oo(b` occurred in the line above, followed by `ar, baz)` (8 tokens, the most
    // drafted): the model agrees with all of it and picks `;` itself. After `;`, `az);` gives
    // `\n` (the prompt's suffix marker follows it), which the model rejects by ending the answer.
    assert_eq!(
        (
            completion.figures.generation.n_drafted,
            completion.figures.generation.n_accepted
        ),
        (9, 8)
    );
    let n_prompt = completion.figures.generation.n_prompt;
    let decode_calls: Vec<Call> = h
        .calls()
        .into_iter()
        .filter(|call| match call {
            Call::Evaluate { n_past, .. } => *n_past >= n_prompt,
            _ => true,
        })
        .collect();
    assert_eq!(
        decode_calls,
        vec![
            Call::EvaluateEach {
                seq: 0,
                n_past: n_prompt,
                n_tokens: 1 + 8
            },
            Call::EvaluateEach {
                seq: 0,
                n_past: n_prompt + 9,
                n_tokens: 1 + 1
            },
            Call::Trim {
                seq: 0,
                n_keep: n_prompt + 10
            },
        ]
    );
    // The cache holds the prompt and the answer, as the slot's bookkeeping says.
    let held = h.fake.lock().unwrap().contents[0].clone();
    assert_eq!(&held[n_prompt as usize..], &tokens("bar, baz);")[..]);
    assert_eq!(held, h.scheduler.slot_tokens(0));
    let stats = h.shared.stats().clone();
    assert_eq!((stats.n_tokens_drafted, stats.n_tokens_accepted), (9, 8));
}

#[test]
fn a_stop_rule_ends_the_answer_inside_a_verified_draft() {
    let mut h = harness(speculating(8));
    h.reply("bar, baz);");
    let mut short = request("a", repeating_prompt());
    short.max_tokens = 6;
    let completion = h.complete(short);
    // The draft after `b` is verified whole, but only five of its tokens are handed out before
    // the budget of six ends the answer.
    assert_eq!(completion.text, "bar, b");
    assert_eq!(completion.figures.generation.n_generated, 6);
    assert_eq!(completion.figures.stop, StopReason::MaxTokens);
    let held = h.fake.lock().unwrap().contents[0].clone();
    assert_eq!(held, h.scheduler.slot_tokens(0));
}

#[test]
fn sampling_with_temperature_never_speculates() {
    let mut h = harness(speculating(8));
    h.reply("bar, baz);");
    let mut sampled = request("a", repeating_prompt());
    sampled.sampling.temperature = 0.7;
    let completion = h.complete(sampled);
    assert_eq!(completion.text, "bar, baz);");
    assert_eq!(completion.figures.generation.n_drafted, 0);
    assert!(verifications(&h.fake).is_empty());
}

#[test]
fn drafts_stop_before_control_tokens_and_fit_the_batch() {
    // After `b`, the line above goes on with `ar, baz);\n` and then the prompt's suffix marker:
    // the draft ends before the marker, whatever the most drafted.
    let mut h = harness(speculating(64));
    h.reply("bar, baz);");
    let completion = h.complete(request("a", repeating_prompt()));
    assert_eq!(completion.text, "bar, baz);");
    assert_eq!(verifications(&h.fake), vec![1 + 10]);
    assert_eq!(
        (
            completion.figures.generation.n_drafted,
            completion.figures.generation.n_accepted
        ),
        (10, 9)
    );

    // Batches of 5 tokens: the pending token and drafts of 4, twice (`ar, ` and `az);`).
    let mut h = harness(FakeOptions {
        n_batch: 5,
        ..speculating(64)
    });
    h.reply("bar, baz);");
    let completion = h.complete(request("a", repeating_prompt()));
    assert_eq!(completion.text, "bar, baz);");
    assert_eq!(verifications(&h.fake), vec![1 + 4, 1 + 4]);
    assert_eq!(completion.figures.generation.n_accepted, 8);
}

#[test]
fn a_completion_with_verified_tokens_hands_them_out_while_batched_with_another() {
    let mut h = harness(speculating(8));
    h.reply("bar, baz);");
    h.reply("ok");
    let mut first = h.submit(request("a", repeating_prompt()));
    for _ in 0..4 {
        h.scheduler.step(); // start, prefill, `b`, the draft verified and `a`
    }
    assert_eq!(verifications(&h.fake), vec![1 + 8]);
    let mut second = h.submit(request("b", prompt("x")));
    h.run_until_idle();
    assert_eq!(first.try_recv().unwrap().unwrap().text, "bar, baz);");
    assert_eq!(second.try_recv().unwrap().unwrap().text, "ok");
    // Batched steps hand out the verified tokens and draft nothing; the second answer is done
    // before the first one's last token (`;`), which then goes with its draft (`\n`) alone.
    assert_eq!(verifications(&h.fake), vec![1 + 1]);
    for slot_idx in 0..2 {
        let held = h.fake.lock().unwrap().contents[slot_idx].clone();
        assert_eq!(held, h.scheduler.slot_tokens(slot_idx));
    }
}

#[test]
fn chat_answers_that_copy_the_prompt_are_drafted_from_it() {
    let mut h = harness(speculating(8));
    h.chat_fake.lock().unwrap().push_reply("print(total)");
    let mut request = chat(None);
    request.messages[0].content = "print(total)".into();
    let (mut answer, mut deltas) = h.submit_chat(request);
    h.run_until_idle();
    let outcome = answer.try_recv().unwrap().unwrap();
    assert_eq!(outcome.text, "print(total)");
    let mut streamed = String::new();
    while let Ok(delta) = deltas.try_recv() {
        streamed += &delta;
    }
    assert_eq!(streamed, "print(total)");
    // The prompt is `<user>print(total)\n<assistant>`. After `p`, `>p` gives `rint(tot`, all
    // agreed; after the model's `a`, `tota` gives `l)\n<assi`, of which the model agrees with
    // `l)` and then ends the answer.
    let stats = h.shared.stats().clone();
    assert_eq!((stats.n_tokens_drafted, stats.n_tokens_accepted), (16, 10));
    assert_eq!(verifications(&h.chat_fake), vec![1 + 8, 1 + 8]);
}

/// A draft model's fake, as wide as the completions' context; `drafts` are what its calls
/// propose, one a call.
fn draft_model(drafts: &[&str], n_batch: u32) -> Fake {
    let draft = Fake::new(FakeOptions {
        n_batch,
        ..FakeOptions::default()
    });
    for text in drafts {
        draft.state.lock().unwrap().push_reply(text);
    }
    draft
}

fn drafting_with_a_model() -> FakeOptions {
    FakeOptions {
        max_model_draft: 8,
        ..FakeOptions::default()
    }
}

/// The draft model's calls since the last look: evaluations (position, tokens) and trims.
fn draft_calls(draft: &Mutex<FakeState>) -> Vec<Call> {
    draft.lock().unwrap().take_calls()
}

#[test]
fn a_draft_model_catches_up_while_idle_and_its_drafts_are_checked_in_one_batch() {
    let mut plain = harness(FakeOptions::default());
    plain.reply("hello world");
    plain.complete(request("a", prompt("x")));
    plain.reply("hello world");
    let expected = plain.complete(request("a", prompt("xy")));
    assert_eq!(expected.text, "hello world");

    let draft = draft_model(&["ello", "wxrld", "rld"], 64);
    let draft_state = draft.state.clone();
    let mut h = harness_drafting(drafting_with_a_model(), Some(draft));
    // The first completion in a file: the draft model has never seen the prompt, so the
    // completion decodes plainly, and once it is done the draft model catches up with the
    // slot's prompt while the engine is idle, not with the answer, which the next keystroke's
    // prompt drops.
    h.reply("hello world");
    let first = h.complete(request("a", prompt("x")));
    assert_eq!(first.figures.generation.n_drafted, 0);
    let n_first_prompt = first.figures.generation.n_prompt;
    assert!(h.scheduler.slot_tokens(0).len() as u32 > n_first_prompt);
    assert_eq!(
        draft_calls(&draft_state),
        vec![Call::Evaluate {
            seq: 0,
            n_past: 0,
            n_tokens: n_first_prompt
        }]
    );
    // A keystroke: the draft model evaluates the few tokens it lags by, then drafts.
    h.reply("hello world");
    let completion = h.complete(request("a", prompt("xy")));
    assert_eq!(completion.text, expected.text);
    // After `h`, the draft model's `ello` is agreed with whole and the model picks ` `; after
    // ` `, `w` of `wxrld` and the model picks `o`; after `o`, `rld`, and the model ends.
    assert_eq!(
        (
            completion.figures.generation.n_drafted,
            completion.figures.generation.n_accepted
        ),
        (4 + 5 + 3, 4 + 1 + 3)
    );
    assert_eq!(verifications(&h.fake), vec![1 + 4, 1 + 5, 1 + 3]);
    let n_prompt = completion.figures.generation.n_prompt;
    let calls = draft_calls(&draft_state);
    // It held the old prompt, which the new one extends (the tail-only layout), and evaluated
    // the rest of the prompt and `h` in one batch, a few tokens; then a token a step, each
    // draft's last one included (the draft model looks at what follows it: the end); the second
    // time it evaluated the model's ` ` after its own agreed `ello`; the third, it cut its
    // rejected `xrld` back before evaluating the model's `o`.
    let single = |n_past: u32| Call::Evaluate {
        seq: 0,
        n_past,
        n_tokens: 1,
    };
    let mut expected_calls = vec![Call::Evaluate {
        seq: 0,
        n_past: n_first_prompt,
        n_tokens: n_prompt + 1 - n_first_prompt,
    }];
    assert!(n_prompt + 1 - n_first_prompt <= 4, "{calls:?}");
    expected_calls.extend((1..=4).map(|idx| single(n_prompt + idx)));
    expected_calls.extend((5..=10).map(|idx| single(n_prompt + idx)));
    expected_calls.push(Call::Trim {
        seq: 0,
        n_keep: n_prompt + 7,
    });
    expected_calls.extend((7..=10).map(|idx| single(n_prompt + idx)));
    assert_eq!(calls, expected_calls);
    // Level with the slot again: nothing to catch up.
    let held = draft_state.lock().unwrap().contents[0].clone();
    assert_eq!(held, h.scheduler.slot_tokens(0));
    let main_held = h.fake.lock().unwrap().contents[0].clone();
    assert_eq!(main_held, h.scheduler.slot_tokens(0));
}

/// Warming a document brings the draft model level with its prompt too, while idle, so its
/// first keystroke drafts at once.
#[test]
fn a_warmed_document_is_caught_up_on_the_draft_model_and_its_first_keystroke_drafts() {
    let draft = draft_model(&[" x = 2;"], 64);
    let draft_state = draft.state.clone();
    let mut h = harness_drafting(drafting_with_a_model(), Some(draft));
    warm(&mut h, "a", "    ");
    h.run_until_idle();
    assert_eq!(evaluations(&h.calls()), [(0, 64), (64, 64), (128, 53)]);
    // The warming first, then the draft model's catching up, a batch of 64 a step.
    assert_eq!(
        evaluations(&draft_calls(&draft_state)),
        [(0, 64), (64, 64), (128, 53)]
    );
    h.reply("t x = 2;");
    let completion = h.complete(request("a", long_prompt("    l")));
    assert_eq!(completion.text, "t x = 2;");
    assert_eq!(completion.figures.generation.n_evaluated, 1);
    // The draft model evaluated the typed `l` with the model's first token, `t`, and drafted
    // the rest of the answer, which the model agreed with whole.
    let generation = &completion.figures.generation;
    assert_eq!((generation.n_drafted, generation.n_accepted), (7, 7));
    assert_eq!(
        draft_calls(&draft_state).first(),
        Some(&Call::Evaluate {
            seq: 0,
            n_past: 181,
            n_tokens: 2
        })
    );
}

#[test]
fn a_draft_model_far_behind_is_caught_up_a_batch_a_step_and_only_while_idle() {
    // Batches of 16 on the draft model, fewer than the prompt: the completion decodes plainly
    // and evaluates nothing on the draft model; the idle steps after it catch it up 16 tokens at
    // a time, most recently used slot first.
    let draft = draft_model(&[], 16);
    let draft_state = draft.state.clone();
    let mut h = harness_drafting(drafting_with_a_model(), Some(draft));
    h.reply("abc");
    h.reply("abcdefgh");
    let mut first = h.submit(request("a", prompt("x")));
    let mut second = h.submit(request("b", prompt("y")));
    let (mut first_done, mut second_done) = (None, None);
    let mut n_steps = 0;
    while first_done.is_none() || second_done.is_none() {
        h.scheduler.step();
        first_done = first_done.or(first.try_recv().ok());
        second_done = second_done.or(second.try_recv().ok());
        n_steps += 1;
        assert!(n_steps < 100);
    }
    assert!(draft_calls(&draft_state).is_empty());
    h.run_until_idle();
    // The prompts only, not the answers.
    let n_prompt = |done: Option<Result<Completion, Error>>| {
        done.unwrap().unwrap().figures.generation.n_prompt as usize
    };
    let (n_a, n_b) = (n_prompt(first_done), n_prompt(second_done));
    let chunks = |n_held: usize| -> Vec<(u32, u32)> {
        (0..n_held)
            .step_by(16)
            .map(|start| (start as u32, (n_held - start).min(16) as u32))
            .collect()
    };
    let (a, b) = (h.scheduler.slot_tokens(0), h.scheduler.slot_tokens(1));
    assert!(a.len() > n_a && b.len() > n_b);
    let (a, b) = (a[..n_a].to_vec(), b[..n_b].to_vec());
    let calls = draft_calls(&draft_state);
    let seqs: Vec<u32> = calls
        .iter()
        .map(|call| match call {
            Call::Evaluate { seq, .. } => *seq,
            other => panic!("{other:?}"),
        })
        .collect();
    // `b` was used last: its slot first.
    let n_b = chunks(b.len()).len();
    assert!(seqs[..n_b].iter().all(|&seq| seq == 1), "{seqs:?}");
    assert!(seqs[n_b..].iter().all(|&seq| seq == 0), "{seqs:?}");
    assert_eq!(evaluations(&calls[..n_b]), chunks(b.len()));
    assert_eq!(evaluations(&calls[n_b..]), chunks(a.len()));
    let contents = draft_state.lock().unwrap().contents.clone();
    assert_eq!((contents[0].clone(), contents[1].clone()), (a, b));
}

/// A harness whose draft model, `draft`, arrives when the flag returned is set.
fn harness_with_a_late_draft_model(draft: Fake) -> (Harness, Arc<AtomicBool>) {
    let arrived = Arc::new(AtomicBool::new(false));
    let draft_arrived = arrived.clone();
    let mut draft = Some(draft);
    let mut h = harness(drafting_with_a_model());
    let backend = Fake::new(drafting_with_a_model());
    h.fake = backend.state.clone();
    h.scheduler = Scheduler::new(
        backend,
        Box::new(|| Ok(None)),
        Some(Box::new(move || {
            Ok(if draft_arrived.load(AtomicOrdering::SeqCst) {
                draft.take()
            } else {
                None
            })
        })),
        h.shared.clone(),
    );
    (h, arrived)
}

#[test]
fn completions_decode_plainly_until_the_draft_model_arrives_and_without_one_that_fails() {
    let (mut h, arrived) = harness_with_a_late_draft_model(draft_model(&["bc"], 64));
    h.reply("abcd");
    let loading = h.complete(request("a", prompt("x")));
    assert_eq!(loading.text, "abcd");
    assert_eq!(loading.figures.generation.n_drafted, 0);
    // It arrives: the next completion finds it (too far behind to draft yet), the idle time
    // after catches it up, and the one after that drafts.
    arrived.store(true, AtomicOrdering::SeqCst);
    h.reply("abcd");
    let arriving = h.complete(request("a", prompt("xy")));
    assert_eq!(arriving.figures.generation.n_drafted, 0);
    h.reply("abcd");
    let ready = h.complete(request("a", prompt("xyz")));
    assert_eq!(ready.text, "abcd");
    assert_eq!(ready.figures.generation.n_accepted, 2);

    let backend = Fake::new(drafting_with_a_model());
    h.fake = backend.state.clone();
    h.scheduler = Scheduler::new(
        backend,
        Box::new(|| Ok(None)),
        Some(Box::new(|| Err("no such file".to_owned()))),
        h.shared.clone(),
    );
    h.reply("abcd");
    let failed = h.complete(request("a", prompt("x")));
    assert_eq!(failed.text, "abcd");
    assert_eq!(failed.figures.generation.n_drafted, 0);
    assert!(verifications(&h.fake).is_empty());
}

/// A draft model that arrives while the engine is idle is taken then, and caught up with the
/// slots' prompts before the next keystroke, which drafts.
#[test]
fn a_draft_model_that_arrives_while_idle_is_caught_up_before_the_next_keystroke() {
    let draft = draft_model(&["bc"], 64);
    let draft_state = draft.state.clone();
    let (mut h, arrived) = harness_with_a_late_draft_model(draft);
    h.reply("abcd");
    let before = h.complete(request("a", prompt("x")));
    assert_eq!(before.figures.generation.n_drafted, 0);
    // Nothing arrived yet: an idle engine with a prompt to catch up waits for it, looking again.
    assert!(h.scheduler.is_idle() && h.scheduler.waits_for_draft_model());
    arrived.store(true, AtomicOrdering::SeqCst);
    h.run_until_idle();
    assert!(!h.scheduler.waits_for_draft_model());
    let n_prompt = before.figures.generation.n_prompt;
    assert_eq!(evaluations(&draft_calls(&draft_state)), [(0, n_prompt)]);
    assert_eq!(h.shared.stats().n_draft_lag, 0);
    h.reply("abcd");
    let after = h.complete(request("a", prompt("xy")));
    assert_eq!(after.text, "abcd");
    // After the model's `a`, its `bc` is agreed with; after the model's `d`, with nothing
    // scripted, it drafts eight `x`, which the model's end rejects.
    assert_eq!(
        (
            after.figures.generation.n_drafted,
            after.figures.generation.n_accepted
        ),
        (2 + 8, 2)
    );
}

#[test]
fn chats_draft_with_the_draft_model_too() {
    let mut h = harness(FakeOptions::default());
    let chat_backend = Fake::new(FakeOptions {
        n_seq: 1,
        max_model_draft: 8,
        ..FakeOptions::default()
    });
    let chat_fake = chat_backend.state.clone();
    let draft = draft_model(&["rint(to", "al)"], 64);
    let draft_state = draft.state.clone();
    let mut chat_parts = Some((chat_backend, draft));
    h.scheduler = Scheduler::new(
        Fake::new(FakeOptions::default()),
        Box::new(move || {
            Ok(chat_parts.take().map(|(backend, draft)| {
                let mut draft = Some(draft);
                let make_draft: super::draft::MakeDraftBackend<'static, Fake> =
                    Box::new(move || Ok(draft.take()));
                (backend, Some(make_draft))
            }))
        }),
        None,
        h.shared.clone(),
    );
    chat_fake.lock().unwrap().push_reply("print(total)");
    let (mut answer, _deltas) = h.submit_chat(chat(None));
    h.run_until_idle();
    let outcome = answer.try_recv().unwrap().unwrap();
    assert_eq!(outcome.text, "print(total)");
    // After `p`, `rint(to` is agreed with whole and the model picks `t`; after `t`, `al)` too,
    // and the model ends the answer.
    assert_eq!(verifications(&chat_fake), vec![1 + 7, 1 + 3]);
    let stats = h.shared.stats().clone();
    assert_eq!((stats.n_tokens_drafted, stats.n_tokens_accepted), (10, 10));
    assert!(!draft_state.lock().unwrap().take_calls().is_empty());
}

#[test]
fn an_engine_whose_callers_are_gone_stops_without_catching_the_draft_model_up() {
    let draft = draft_model(&[], 4);
    let draft_state = draft.state.clone();
    let mut draft = Some(draft);
    let backend = Fake::new(drafting_with_a_model());
    backend.state.lock().unwrap().push_reply("abc");
    let scheduler = Scheduler::new(
        backend,
        Box::new(|| Ok(None)),
        Some(Box::new(move || Ok(draft.take()))),
        Arc::new(Shared::default()),
    );
    let (commands, inbox) = std::sync::mpsc::channel();
    let (reply, mut answer) = oneshot::channel();
    commands
        .send(Command::Complete(CompletionJob {
            request: request("a", prompt("x")),
            reply,
            submitted_at: Instant::now(),
        }))
        .unwrap();
    drop(commands);
    super::thread::run(scheduler, inbox);
    assert_eq!(answer.try_recv().unwrap().unwrap().text, "abc");
    // The draft model, made during the completion, lags by the whole slot; catching it up would
    // speed up a keystroke nobody is left to type, and would hold the models meanwhile.
    assert!(draft_state.lock().unwrap().take_calls().is_empty());
}
