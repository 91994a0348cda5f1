//! Reads a case file (the language is documented in `scenarios/README.md`). Every problem is
//! reported with the file, the line and what is wrong; nothing about a bad file is guessed.

use crate::case::{Action, Actor, BulkEntry, Case, Expected, Flag, Role, Setup, Step};
use fsync_protocol::snapshot::SessionStatus;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// What is wrong with a case file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.problem)
    }
}

impl std::error::Error for ParseError {}

/// Reads and parses the case at `path`.
pub fn read(path: &Path) -> Result<Case, ParseError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        file: file.clone(),
        line: 0,
        problem: format!("cannot read it: {e}"),
    })?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&file, &name, &text)
}

/// Parses case text; `file` names it in errors, `name` is the case's name.
pub fn parse(file: &str, name: &str, text: &str) -> Result<Case, ParseError> {
    let mut parser = Parser { file, case: Case::empty(name), bulk: None, title_seen: false };
    for (i, raw) in text.lines().enumerate() {
        parser.line(i + 1, raw).map_err(|problem| ParseError { file: file.to_owned(), line: i + 1, problem })?;
    }
    parser.finish(text.lines().count())
}

impl Case {
    fn empty(name: &str) -> Case {
        Case { name: name.to_owned(), title: String::new(), setup: Setup::default(), actors: vec![], steps: vec![] }
    }
}

/// An open `bulk` block: its step, waiting for its entries and `end`.
struct OpenBulk {
    step: Step,
    entries: Vec<BulkEntry>,
    /// The entries as written, for the step's text.
    lines: Vec<String>,
}

struct Parser<'a> {
    file: &'a str,
    case: Case,
    bulk: Option<OpenBulk>,
    title_seen: bool,
}

impl Parser<'_> {
    fn line(&mut self, line: usize, raw: &str) -> Result<(), String> {
        let (statement, expect) = split_expectation(raw)?;
        let words = words(statement)?;
        let Some(first) = words.first() else {
            return if expect.is_some() { Err("an expectation (=>) needs a step before it".into()) } else { Ok(()) };
        };
        if !self.title_seen {
            return self.title(first, statement, expect);
        }
        if self.bulk.is_some() {
            return self.bulk_line(statement.trim(), &words, expect);
        }
        let text = statement.trim().to_owned();
        match first.as_str() {
            "servers" | "container-token-ttl" | "actor" | "fixture" => self.setup(&words, expect),
            "flag" if self.case.steps.is_empty() => self.setup(&words, expect),
            _ => {
                let action = self.action(&words)?;
                let step = Step { line, text, action, expect };
                if matches!(step.action, Action::Bulk { .. }) {
                    self.bulk = Some(OpenBulk { step, entries: vec![], lines: vec![] });
                } else {
                    self.case.steps.push(step);
                }
                Ok(())
            }
        }
    }

    fn title(&mut self, first: &str, statement: &str, expect: Option<String>) -> Result<(), String> {
        if first != "scenario" || expect.is_some() {
            return Err("a case starts with `scenario <what it shows>`".into());
        }
        let title = statement.trim().trim_start_matches("scenario").trim();
        if title.is_empty() {
            return Err("`scenario` needs a title saying what the case shows".into());
        }
        self.case.title = title.to_owned();
        self.title_seen = true;
        Ok(())
    }

    fn setup(&mut self, words: &[String], expect: Option<String>) -> Result<(), String> {
        if expect.is_some() {
            return Err(format!("`{}` is a setting, not a step: it has no outcome to expect", words[0]));
        }
        if !self.case.steps.is_empty() {
            return Err(format!("`{}` must come before the first step", words[0]));
        }
        let setup = &mut self.case.setup;
        match words {
            [_, n] if words[0] == "servers" => {
                setup.servers = match n.parse::<usize>() {
                    Ok(n @ 1..=2) => n,
                    _ => return Err(format!("servers must be 1 or 2, not {n:?}")),
                }
            }
            [_, ttl] if words[0] == "container-token-ttl" => setup.container_token_ttl = Some(duration(ttl)?),
            [_, flag, state] if words[0] == "flag" => flag_word(flag)?.set(&mut setup.flags, on_off(state)?),
            [_, name, role] if words[0] == "actor" => self.actor(name, role)?,
            [_, size, seed_word, seed] if words[0] == "fixture" && seed_word == "seed" => {
                if !matches!(size.as_str(), "tiny" | "small" | "medium" | "large") {
                    return Err(format!("unknown fixture size {size:?} (tiny, small, medium, large)"));
                }
                let seed = seed.parse().map_err(|_| format!("the fixture seed must be a number, not {seed:?}"))?;
                setup.fixture = Some((size.clone(), seed));
            }
            _ => return Err(format!("cannot read this `{}` line; {}", words[0], usage(&words[0]))),
        }
        Ok(())
    }

    fn actor(&mut self, name: &str, role: &str) -> Result<(), String> {
        let role =
            Role::parse(role).ok_or_else(|| format!("unknown role {role:?} (owner, editor, viewer, outsider)"))?;
        if KEYWORDS.contains(&name) {
            return Err(format!("{name:?} is a keyword and cannot name an actor"));
        }
        if self.case.actor(name).is_some() {
            return Err(format!("actor {name:?} is declared twice"));
        }
        if role == Role::Owner && self.case.actors.iter().any(|a| a.role == Role::Owner) {
            return Err("a project has one owner; a second `owner` is declared here".into());
        }
        self.case.actors.push(Actor { name: name.to_owned(), role });
        Ok(())
    }

    fn action(&self, words: &[String]) -> Result<Action, String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["session", session, rest @ ..] => self.session(session, rest),
            ["container", session, "upsert", path, content] => Ok(Action::ContainerUpsert {
                session: self.session_name(session)?,
                path: path.to_string(),
                content: content.to_string(),
            }),
            ["cut", "agents"] => Ok(Action::CutAgents),
            ["heal", "agents"] => Ok(Action::HealAgents),
            ["flag", flag, state] => Ok(Action::SetFlag { flag: flag_word(flag)?, on: on_off(state)? }),
            ["wait", d] => Ok(Action::Wait(duration(d)?)),
            ["quiesce"] => Ok(Action::Quiesce),
            ["fetch", link] => Ok(Action::Fetch { link: link.to_string() }),
            [actor, verb, rest @ ..] if !KEYWORDS.contains(actor) => self.actor_action(actor, verb, rest),
            _ => Err(format!("unknown step `{}`; {STEPS}", words.join(" "))),
        }
    }

    fn actor_action(&self, actor: &str, verb: &str, rest: &[&str]) -> Result<Action, String> {
        if self.case.actor(actor).is_none() {
            return Err(format!("unknown actor {actor:?}: declare it with `actor {actor} <role>` first"));
        }
        let actor = actor.to_owned();
        match (verb, rest) {
            ("upsert", [path, content, options @ ..]) => {
                let (file_type, expect) = upsert_options(path, options)?;
                Ok(Action::Upsert { actor, path: path.to_string(), content: content.to_string(), file_type, expect })
            }
            ("delete", [path, options @ ..]) => {
                Ok(Action::Delete { actor, path: path.to_string(), expect: expect_option(options)? })
            }
            ("bulk", []) => Ok(Action::Bulk { actor, entries: vec![] }),
            ("binary", [path, size]) => {
                let (width, height) = dimensions(size)?;
                Ok(Action::Binary { actor, path: path.to_string(), width, height })
            }
            ("sign", [path, "for", d, "as", link]) => {
                Ok(Action::Sign { actor, path: path.to_string(), expires: duration(d)?, link: link.to_string() })
            }
            ("read", []) => Ok(Action::Read { actor }),
            ("remove", [member]) => {
                if self.case.actor(member).is_none() {
                    return Err(format!("unknown actor {member:?} to remove"));
                }
                Ok(Action::RemoveMember { actor, member: member.to_string() })
            }
            _ => Err(format!("cannot read `{actor} {verb} {}`; {STEPS}", rest.join(" "))),
        }
    }

    fn session(&self, session: &str, rest: &[&str]) -> Result<Action, String> {
        let session = self.session_name(session)?;
        match rest {
            ["start", "by", actor, options @ ..] => {
                if self.case.actor(actor).is_none() {
                    return Err(format!("unknown actor {actor:?}"));
                }
                let (server, held, deaf) = start_options(options, self.case.setup.servers)?;
                Ok(Action::StartSession { session, actor: actor.to_string(), server, held, deaf })
            }
            ["release"] => Ok(Action::Release { session }),
            ["wait", "running"] => Ok(Action::WaitFor { session, status: SessionStatus::Running }),
            ["wait", "behind"] => Ok(Action::WaitFor { session, status: SessionStatus::Behind }),
            ["wait", "gone"] => Ok(Action::WaitGone { session }),
            ["stop"] => Ok(Action::StopSession { session }),
            _ => Err(format!("cannot read this session step; {}", usage("session"))),
        }
    }

    fn session_name(&self, session: &str) -> Result<String, String> {
        if session.is_empty() || !session.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("a session name is letters, digits and '-', not {session:?}"));
        }
        Ok(session.to_owned())
    }

    fn bulk_line(&mut self, text: &str, words: &[String], expect: Option<String>) -> Result<(), String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let open = self.bulk.as_mut().expect("bulk_line is called inside a bulk");
        if expect.is_some() {
            return Err("a bulk's expectation goes on its `bulk` line, not on its entries".into());
        }
        let entry = match w.as_slice() {
            ["end"] => {
                let mut open = self.bulk.take().expect("inside a bulk");
                if open.entries.is_empty() {
                    return Err("a bulk needs at least one entry before `end`".into());
                }
                if let Action::Bulk { entries, .. } = &mut open.step.action {
                    *entries = std::mem::take(&mut open.entries);
                }
                open.step.text = format!("{} [{}]", open.step.text, open.lines.join("; "));
                self.case.steps.push(open.step);
                return Ok(());
            }
            ["upsert", path, content, options @ ..] => {
                let (file_type, expect) = upsert_options(path, options)?;
                BulkEntry::Upsert { path: path.to_string(), content: content.to_string(), file_type, expect }
            }
            ["delete", path, options @ ..] => {
                BulkEntry::Delete { path: path.to_string(), expect: expect_option(options)? }
            }
            _ => {
                return Err(format!(
                    "inside a bulk: `upsert PATH \"CONTENT\" ...`, `delete PATH ...` or `end`, not `{}`",
                    w.join(" ")
                ))
            }
        };
        open.entries.push(entry);
        open.lines.push(text.to_owned());
        Ok(())
    }

    fn finish(self, lines: usize) -> Result<Case, ParseError> {
        let error = |line: usize, problem: String| ParseError { file: self.file.to_owned(), line, problem };
        if !self.title_seen {
            return Err(error(1, "the file is empty: a case starts with `scenario <what it shows>`".into()));
        }
        if let Some(open) = &self.bulk {
            return Err(error(open.step.line, "this bulk has no `end`".into()));
        }
        if !self.case.actors.iter().any(|a| a.role == Role::Owner) {
            return Err(error(lines, "no actor is the project's owner (`actor NAME owner`)".into()));
        }
        if self.case.steps.is_empty() {
            return Err(error(lines, "a case needs at least one step".into()));
        }
        check_sessions(&self.case).map_err(|(line, problem)| error(line, problem))?;
        Ok(self.case)
    }
}

/// Sessions are started once before anything else uses them; links are signed before fetched.
fn check_sessions(case: &Case) -> Result<(), (usize, String)> {
    let (mut sessions, mut links) = (Vec::<&str>::new(), Vec::<&str>::new());
    for step in &case.steps {
        let used = match &step.action {
            Action::StartSession { session, .. } => {
                if sessions.contains(&session.as_str()) {
                    return Err((step.line, format!("session {session} is started twice")));
                }
                sessions.push(session);
                None
            }
            Action::Release { session }
            | Action::WaitFor { session, .. }
            | Action::WaitGone { session }
            | Action::StopSession { session }
            | Action::ContainerUpsert { session, .. } => Some(session),
            Action::Sign { link, .. } => {
                links.push(link);
                None
            }
            Action::Fetch { link } if !links.contains(&link.as_str()) => {
                return Err((step.line, format!("link {link} is fetched before a `sign ... as {link}` step")))
            }
            _ => None,
        };
        if let Some(session) = used {
            if !sessions.contains(&session.as_str()) {
                return Err((step.line, format!("session {session} is used before `session {session} start`")));
            }
        }
    }
    Ok(())
}

/// Words that start steps or settings, so no actor may be named by one.
const KEYWORDS: &[&str] = &[
    "scenario",
    "servers",
    "container-token-ttl",
    "flag",
    "actor",
    "fixture",
    "session",
    "container",
    "cut",
    "heal",
    "wait",
    "quiesce",
    "fetch",
    "end",
];

const STEPS: &str =
    "steps are `ACTOR upsert|delete|bulk|binary|sign|read|remove ...`, `session S start|release|wait running|wait behind|wait gone|stop`, \
`container S upsert ...`, `cut agents`, `heal agents`, `flag NAME on|off`, `wait DURATION`, `fetch LINK`, `quiesce`";

fn usage(keyword: &str) -> &'static str {
    match keyword {
        "servers" => "write `servers 1` or `servers 2`",
        "container-token-ttl" => "write `container-token-ttl 8s`",
        "flag" => "write `flag snapshot-hydration|client-broadcast|rpc on|off`",
        "actor" => "write `actor NAME owner|editor|viewer|outsider`",
        "fixture" => "write `fixture tiny|small|medium|large seed N`",
        "session" => "write `session S start by ACTOR [on server N] [held] [deaf]`, `session S release`, `session S wait running|behind|gone` or `session S stop`",
        _ => STEPS,
    }
}

/// Splits `statement => expectation` (an `=>` inside quotes is content).
fn split_expectation(raw: &str) -> Result<(&str, Option<String>), String> {
    let line = strip_comment(raw);
    let mut quoted = false;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'=' if !quoted && bytes.get(i + 1) == Some(&b'>') => {
                let expect = line[i + 2..].trim();
                if expect.is_empty() {
                    return Err("`=>` needs the outcome expected after it".into());
                }
                return Ok((&line[..i], Some(expect.to_owned())));
            }
            _ => {}
        }
        i += 1;
    }
    Ok((line, None))
}

/// A line without its `# comment` (a `#` inside quotes is content).
fn strip_comment(raw: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in raw.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return &raw[..i],
            _ => {}
        }
    }
    raw
}

/// Splits on whitespace; `"..."` is one word with `\"`, `\\` and `\n` escapes.
fn words(statement: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = statement.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            words.push(quoted(&mut chars)?);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            words.push(word);
        }
    }
    Ok(words)
}

fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let mut word = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(word),
            '\\' => match chars.next() {
                Some('n') => word.push('\n'),
                Some('"') => word.push('"'),
                Some('\\') => word.push('\\'),
                Some(other) => return Err(format!("unknown escape \\{other} (use \\n, \\\" or \\\\)")),
                None => break,
            },
            c => word.push(c),
        }
    }
    Err("a quoted text is not closed (a missing \")".into())
}

fn upsert_options(path: &str, options: &[&str]) -> Result<(String, Expected), String> {
    let (mut file_type, mut rest) = (fsync_fixtures::file_type_of(path).to_owned(), options);
    if let ["as", kind, tail @ ..] = rest {
        file_type = kind.to_string();
        rest = tail;
    }
    Ok((file_type, expect_option(rest)?))
}

fn expect_option(options: &[&str]) -> Result<Expected, String> {
    match options {
        [] => Ok(Expected::Any),
        ["expect", "new"] => Ok(Expected::New),
        ["expect", n] => {
            n.parse().map(Expected::Version).map_err(|_| format!("`expect` takes `new` or a version, not {n:?}"))
        }
        _ => Err(format!("cannot read `{}`: options are `as TYPE` and `expect N|new`", options.join(" "))),
    }
}

/// `[on server N] [held] [deaf]` after `start by ACTOR`: the server's index, held, deaf.
fn start_options(options: &[&str], servers: usize) -> Result<(usize, bool, bool), String> {
    let (mut server, mut held, mut deaf, mut rest) = (1, false, false, options);
    if let ["on", "server", n, tail @ ..] = rest {
        server =
            n.parse().ok().filter(|n| (1..=servers).contains(n)).ok_or_else(|| {
                format!("server {n:?} does not exist: this case has {servers} (set `servers 2` for two)")
            })?;
        rest = tail;
    }
    if let ["held", tail @ ..] = rest {
        held = true;
        rest = tail;
    }
    if let ["deaf", tail @ ..] = rest {
        deaf = true;
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!(
            "cannot read `{}` after `start by ACTOR`: `on server N`, then `held`, then `deaf`",
            rest.join(" ")
        ));
    }
    Ok((server - 1, held, deaf))
}

fn flag_word(word: &str) -> Result<Flag, String> {
    Flag::parse(word).ok_or_else(|| format!("unknown flag {word:?} ({})", Flag::NAMES))
}

fn on_off(word: &str) -> Result<bool, String> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("a flag is `on` or `off`, not {word:?}")),
    }
}

/// `500ms`, `10s` or `2m`.
pub fn duration(word: &str) -> Result<Duration, String> {
    let bad = || format!("a duration is a number with ms, s or m (e.g. 500ms, 10s), not {word:?}");
    let (number, unit) = word.split_at(word.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

fn dimensions(word: &str) -> Result<(u32, u32), String> {
    let bad = || format!("an image size is WIDTHxHEIGHT from 1x1 to 512x512, not {word:?}");
    let (w, h) = word.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(1..=512).contains(&w) || !(1..=512).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}
