//! RPC arguments as PostgREST passes them: named JSON values typed by `json_to_record`, with the
//! same coercions and the same errors (a number for a text argument is its text; `"5"` for an
//! integer is 5; `"x"` for a uuid is `22P02`).

use fsync_store::error::ApiError;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The SQL type of an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    Uuid,
    Text,
    Int,
    BigInt,
    Jsonb,
}

/// A typed argument value (`None` is SQL NULL).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Int(Option<i32>),
    BigInt(Option<i64>),
    Jsonb(Option<Value>),
}

/// One RPC's signature: arguments in order, and how many trailing ones have defaults.
pub struct Signature {
    pub name: &'static str,
    pub args: &'static [(&'static str, ArgType)],
    pub defaults: usize,
}

use ArgType::*;

/// Every RPC of the SQL API, as `0003_rpcs.sql` declares them.
pub const SIGNATURES: &[Signature] = &[
    Signature {
        name: "upsert_project_file",
        args: &[
            ("project_uuid", Uuid),
            ("p_file_path", Text),
            ("p_content", Text),
            ("p_file_type", Text),
            ("expected_version", Int),
        ],
        defaults: 1,
    },
    Signature {
        name: "delete_project_file",
        args: &[("project_uuid", Uuid), ("p_file_path", Text), ("expected_version", Int)],
        defaults: 1,
    },
    Signature { name: "list_current_files", args: &[("project_uuid", Uuid)], defaults: 0 },
    Signature {
        name: "upsert_project_binary",
        args: &[
            ("project_uuid", Uuid),
            ("p_file_path", Text),
            ("p_content_hash", Text),
            ("p_file_type", Text),
            ("expected_version", Int),
        ],
        defaults: 2,
    },
    Signature { name: "bulk_upsert_project_files", args: &[("project_uuid", Uuid), ("files", Jsonb)], defaults: 0 },
    Signature { name: "list_changes_since", args: &[("project_uuid", Uuid), ("since_seq", BigInt)], defaults: 0 },
    Signature {
        name: "ensure_user_profile",
        args: &[("p_user_id", Uuid), ("p_email", Text), ("p_display_name", Text)],
        defaults: 3,
    },
    Signature { name: "create_project", args: &[("p_name", Text), ("p_owner", Uuid)], defaults: 1 },
    Signature {
        name: "add_project_member",
        args: &[("project_uuid", Uuid), ("p_user_id", Uuid), ("p_role", Text)],
        defaults: 0,
    },
    Signature { name: "remove_project_member", args: &[("project_uuid", Uuid), ("p_user_id", Uuid)], defaults: 0 },
    Signature { name: "list_project_members", args: &[("project_uuid", Uuid)], defaults: 0 },
];

/// Arguments bound to a signature: every argument, given or defaulted (NULL).
pub struct Bound {
    values: Vec<(&'static str, Arg)>,
}

impl Bound {
    fn get(&self, name: &str) -> &Arg {
        &self.values.iter().find(|(n, _)| *n == name).expect("argument of the signature").1
    }

    pub fn uuid(&self, name: &str) -> Option<Uuid> {
        match self.get(name) {
            Arg::Uuid(v) => *v,
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Arg::Text(v) => v.clone(),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i32> {
        match self.get(name) {
            Arg::Int(v) => *v,
            _ => None,
        }
    }

    pub fn bigint(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Arg::BigInt(v) => *v,
            _ => None,
        }
    }

    pub fn jsonb(&self, name: &str) -> Option<Value> {
        match self.get(name) {
            Arg::Jsonb(v) => v.clone(),
            _ => None,
        }
    }
}

fn error(code: &str, message: String, details: Option<String>) -> ApiError {
    ApiError::from_sqlstate(code, &message, details.as_deref(), None, true)
}

/// Finds the signature named `function` that accepts exactly the given argument names, as the
/// server's schema cache does (`PGRST202` otherwise).
pub fn resolve(function: &str, args: &Map<String, Value>) -> Result<&'static Signature, ApiError> {
    let given: Vec<&str> = args.keys().map(String::as_str).collect();
    let signature = SIGNATURES.iter().find(|s| s.name == function);
    let accepts = |s: &Signature| {
        let required = &s.args[..s.args.len() - s.defaults];
        given.iter().all(|g| s.args.iter().any(|(n, _)| n == g)) && required.iter().all(|(n, _)| given.contains(n))
    };
    match signature {
        Some(s) if accepts(s) => Ok(s),
        _ => {
            let mut e = ApiError::new(
                fsync_store::error::StatusCode::NOT_FOUND,
                "PGRST202",
                format!("Could not find the function public.{function}({}) in the schema cache", given.join(", ")),
            );
            if let Some(s) = signature {
                let names: Vec<&str> = s.args.iter().map(|(n, _)| *n).collect();
                e = e.with_hint(format!(
                    "Perhaps you meant to call the function public.{function}({})",
                    names.join(", ")
                ));
            }
            Err(e)
        }
    }
}

/// Types the given arguments in declaration order (the first bad one fails the call) and fills
/// the rest with NULL.
pub fn bind(signature: &Signature, args: &Map<String, Value>) -> Result<Bound, ApiError> {
    let mut values = Vec::new();
    for (name, ty) in signature.args {
        let value = match args.get(*name) {
            None | Some(Value::Null) => null_of(*ty),
            Some(v) => coerce(*ty, v)?,
        };
        values.push((*name, value));
    }
    Ok(Bound { values })
}

fn null_of(ty: ArgType) -> Arg {
    match ty {
        ArgType::Uuid => Arg::Uuid(None),
        ArgType::Text => Arg::Text(None),
        ArgType::Int => Arg::Int(None),
        ArgType::BigInt => Arg::BigInt(None),
        ArgType::Jsonb => Arg::Jsonb(None),
    }
}

/// The text `json_to_record` hands a type's input function.
fn as_text(value: &Value) -> Result<String, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains('\0') {
        return Err(error(
            "22P05",
            "unsupported Unicode escape sequence".to_owned(),
            Some("\\u0000 cannot be converted to text.".to_owned()),
        ));
    }
    Ok(text)
}

fn coerce(ty: ArgType, value: &Value) -> Result<Arg, ApiError> {
    match ty {
        ArgType::Jsonb => Ok(Arg::Jsonb(Some(value.clone()))),
        ArgType::Text => Ok(Arg::Text(Some(as_text(value)?))),
        ArgType::Uuid => {
            let text = as_text(value)?;
            match pg_uuid(&text) {
                Some(u) => Ok(Arg::Uuid(Some(u))),
                None => Err(error("22P02", format!("invalid input syntax for type uuid: \"{text}\""), None)),
            }
        }
        ArgType::Int => {
            parse_int(&as_text(value)?, "integer", i32::MIN as i64, i32::MAX as i64).map(|v| Arg::Int(Some(v as i32)))
        }
        ArgType::BigInt => parse_int(&as_text(value)?, "bigint", i64::MIN, i64::MAX).map(|v| Arg::BigInt(Some(v))),
    }
}

/// PostgreSQL's `uuid` input: 32 hex digits, any case, optionally in braces, with at most one
/// hyphen after any group of four digits; nothing else (no spaces, no `urn:uuid:`).
pub fn pg_uuid(text: &str) -> Option<Uuid> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    let mut hex = String::with_capacity(32);
    let mut after_hyphen = false;
    for c in inner.chars() {
        if c == '-' {
            if after_hyphen || hex.is_empty() || !hex.len().is_multiple_of(4) || hex.len() >= 32 {
                return None;
            }
            after_hyphen = true;
        } else if c.is_ascii_hexdigit() && hex.len() < 32 {
            hex.push(c);
            after_hyphen = false;
        } else {
            return None;
        }
    }
    if hex.len() != 32 || after_hyphen {
        return None;
    }
    Uuid::parse_str(&hex).ok()
}

fn parse_int(text: &str, type_name: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error("22P02", format!("invalid input syntax for type {type_name}: \"{text}\""), None));
    }
    match trimmed.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(error("22003", format!("value \"{text}\" is out of range for type {type_name}"), None)),
    }
}
