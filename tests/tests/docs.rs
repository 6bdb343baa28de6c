//! Runs the examples of docs/guide.md against a real server.

use gears_tests::{Server, Value};

struct Example {
    setup: Vec<String>,
    script: String,
    expect: Expect,
}

enum Expect {
    /// A `results` block: the results of a `run()`, one per line.
    Results(Vec<String>),
    /// A `then` block: the script replies OK (it registered something) and
    /// each line `COMMAND args -> reply` then holds.
    Then(Vec<(String, String)>),
}

/// A reply as the guide writes it: text as is, `(nil)`, `[a, b]`...
fn render(v: &Value) -> String {
    match v {
        Value::Status(s) => s.clone(),
        Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::Nil => "(nil)".into(),
        Value::Error(e) => format!("(error) {e}"),
        Value::Array(a) => format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(", ")),
    }
}

/// Splits the guide into fenced blocks and pairs each `python` block with
/// the `results` block right after it and the `redis` blocks before it.
fn examples(text: &str) -> Vec<Example> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_owned(), String::new())),
            (Some(_), Some("")) => blocks.push(current.take().unwrap()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    let mut out = Vec::new();
    let mut setup = Vec::new();
    for (i, (lang, body)) in blocks.iter().enumerate() {
        match lang.as_str() {
            "redis" => setup.extend(body.lines().map(str::to_owned)),
            "python" => {
                let expect = match blocks.get(i + 1) {
                    Some((l, b)) if l == "results" => {
                        Expect::Results(b.lines().map(str::to_owned).collect())
                    }
                    Some((l, b)) if l == "then" => Expect::Then(
                        b.lines()
                            .map(|line| {
                                let (cmd, reply) = line
                                    .split_once(" -> ")
                                    .unwrap_or_else(|| panic!("no ` -> ` in {line}"));
                                (cmd.to_owned(), reply.to_owned())
                            })
                            .collect(),
                    ),
                    _ => panic!("python block without a results or then block:\n{body}"),
                };
                out.push(Example {
                    setup: std::mem::take(&mut setup),
                    script: body.clone(),
                    expect,
                });
            }
            _ => {}
        }
    }
    out
}

#[test]
fn guide_examples_give_the_documented_results() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/guide.md");
    let examples = examples(&std::fs::read_to_string(path).unwrap());
    assert!(
        examples.len() >= 6,
        "found only {} examples",
        examples.len()
    );
    for ex in examples {
        let s = Server::start(&[]);
        let mut c = s.client();
        for cmd in &ex.setup {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            assert!(!matches!(c.cmd(&args), Value::Error(_)), "{cmd}");
        }
        let r = c.py(&ex.script);
        match &ex.expect {
            Expect::Results(results) => {
                assert!(matches!(r, Value::Array(_)), "{}: {r:?}", ex.script);
                assert_eq!(&r.results(), results, "{}", ex.script);
            }
            Expect::Then(steps) => {
                assert_eq!(r, Value::Status("OK".into()), "{}", ex.script);
                for (cmd, reply) in steps {
                    let args: Vec<&str> = cmd.split_whitespace().collect();
                    assert_eq!(&render(&c.cmd(&args)), reply, "{cmd}\n{}", ex.script);
                }
            }
        }
    }
}
