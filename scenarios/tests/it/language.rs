//! The case language: bad files are refused with the file, the line and the problem; a wrong
//! expectation fails with what was expected beside what happened; a changed transcript shows
//! as a diff.

use fsync_scenarios::case::{Action, Expected};
use fsync_scenarios::{check, parse, sim};

const GOOD: &str = r#"scenario a save then a stale save
actor alice owner
actor bob editor

alice upsert src/App.tsx "export {}" expect new  => ok version 1
bob upsert src/App.tsx "b" expect 0              => error 409 PT409
"#;

fn error_of(text: &str) -> String {
    parse::parse("cases/bad.scenario", "bad", text).expect_err("the case is refused").to_string()
}

#[test]
fn a_good_case_parses_into_its_steps() {
    let case = parse::parse("cases/good.scenario", "good", GOOD).expect("the case parses");
    assert_eq!(case.title, "a save then a stale save");
    assert_eq!(case.actors.len(), 2);
    assert_eq!(case.steps.len(), 2);
    assert_eq!(case.steps[0].line, 5);
    assert_eq!(case.steps[1].expect.as_deref(), Some("error 409 PT409"));
    match &case.steps[0].action {
        Action::Upsert { file_type, expect, content, .. } => {
            assert_eq!((file_type.as_str(), *expect, content.as_str()), ("typescript", Expected::New, "export {}"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_files_name_the_file_the_line_and_the_problem() {
    let cases = [
        ("actor alice owner\n", "cases/bad.scenario:1: a case starts with `scenario <what it shows>`"),
        ("scenario x\nactor alice owner\nbob upsert a \"b\"\n", "cases/bad.scenario:3: unknown actor \"bob\""),
        ("scenario x\nactor alice owner\nalice upsert a \"b\n", "cases/bad.scenario:3: a quoted text is not closed"),
        ("scenario x\nactor alice boss\n", "cases/bad.scenario:2: unknown role \"boss\""),
        (
            "scenario x\nactor alice owner\nalice bulk\n  upsert a \"b\"\n",
            "cases/bad.scenario:3: this bulk has no `end`",
        ),
        ("scenario x\nactor alice owner\nsession s1 stop\n", "cases/bad.scenario:3: session s1 is used before"),
        ("scenario x\nactor alice owner\nwait 10 seconds\n", "cases/bad.scenario:3: unknown step"),
        ("scenario x\nactor alice owner\nwait 10x\n", "cases/bad.scenario:3: a duration is"),
        ("scenario x\nactor alice owner\nalice upsert a \"b\" expect one\n", "cases/bad.scenario:3: `expect` takes"),
        (
            "scenario x\nactor alice owner\nsession s1 start by alice on server 2\n",
            "cases/bad.scenario:3: server \"2\" does not exist",
        ),
        ("scenario x\nactor alice owner\nalice read\nservers 2\n", "cases/bad.scenario:4: `servers` must come before"),
        ("scenario x\nactor alice editor\nalice read\n", "no actor is the project's owner"),
        ("scenario x\nactor alice owner\nalice read =>\n", "cases/bad.scenario:3: `=>` needs the outcome"),
    ];
    for (text, expected) in cases {
        let error = error_of(text);
        assert!(error.contains(expected), "for {text:?}\n  expected: {expected}\n  got:      {error}");
    }
}

#[test]
fn every_committed_case_parses() {
    let cases = check::all_cases(&check::cases_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cases.is_empty());
}

/// A deliberately wrong expectation fails, showing the step, what was expected and what happened.
#[test]
fn a_wrong_expectation_fails_with_expected_and_actual() {
    let wrong = GOOD.replace("=> ok version 1", "=> ok version 2");
    let case = parse::parse("cases/wrong.scenario", "wrong", &wrong).expect("the case parses");
    let run = sim::run_case(&case, 1);
    let error = check::expectations(&case, "sim", &run).expect_err("the wrong expectation is caught");
    assert!(error.contains("line 5: alice upsert src/App.tsx \"export {}\" expect new"), "{error}");
    assert!(error.contains("expected: ok version 2"), "{error}");
    assert!(error.contains("actual:   ok version 1 seq 1"), "{error}");
}

/// A transcript that changed shows as a diff naming both sides.
#[test]
fn a_changed_transcript_shows_as_a_diff() {
    let case = parse::parse("cases/good.scenario", "good", GOOD).expect("the case parses");
    let run = sim::run_case(&case, 1);
    let changed = run.transcript.replace("ok version 1 seq 1", "ok version 1 seq 2");
    let error = check::same_on_both(&case, &run.transcript, &changed).expect_err("a difference is a failure");
    assert!(error.contains("--- simulator"), "{error}");
    assert!(error.contains("+++ real stack"), "{error}");
    assert!(
        error.contains("-    5  alice upsert src/App.tsx \"export {}\" expect new  => ok version 1 seq 1"),
        "{error}"
    );
    assert!(
        error.contains("+    5  alice upsert src/App.tsx \"export {}\" expect new  => ok version 1 seq 2"),
        "{error}"
    );
}
